"""Errors the user can act on. Their message is one line; tracebacks go to the debug log."""


def one_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class InputError(Exception):
    """The user's input is wrong: names the file, the line or row, the field and what was expected."""


class DataContractError(InputError):
    """The data as a whole breaks the contract: too few rows, too many quarantined rows."""


class AccountingError(Exception):
    """Rows were lost or double-counted between stages: a bug in the pipeline, never the user's fault."""


class LeakageError(Exception):
    """A val/test row has a near duplicate in train after splitting: the split is unusable."""


class ServiceUnavailable(Exception):
    """A service the run needs (the MLflow tracking server, the Optuna storage) did not answer after retries;
    the message names it (password redacted). Finished stages are cached: rerun once it is back."""
