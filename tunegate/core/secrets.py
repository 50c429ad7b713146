"""Passwords never leave the process: URIs are shown as `postgresql://me:***@db/optuna` (or `…?password=***`) in the
summary, the terminal, the debug log, MLflow params and tags, and Prefect artifacts. The real URI is used only to
connect."""

from __future__ import annotations

import logging
import re
from typing import Any

# scheme://user:password@ — the password is everything up to the last '@' of the authority (it may contain ':').
CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):(?P<password>[^/\s]*)@")
# ?password=…, &api_key=…, ;access_token=…: a query parameter whose name ends like a secret's (libpq and SQLAlchemy
# take a password there, HTTP services a token; `keyword=` is not one); its value runs to the next separator.
SECRET_PARAMETER = re.compile(
    r"(?P<head>[?&;][^=&;#\s]*(?:password|passwd|pwd|secret|token|key|credentials?)=)(?P<value>[^&;#\s]+)",
    re.IGNORECASE,
)
REDACTED = "***"


def redact(text: str) -> str:
    """`text` with the password of every URI in it (user info, or a query parameter named like a secret) replaced
    by ***."""
    text = CREDENTIALS.sub(lambda match: f"{match['head']}:{REDACTED}@", text)
    return SECRET_PARAMETER.sub(lambda match: f"{match['head']}{REDACTED}", text)


def redact_value(value: Any) -> Any:
    """`redact` applied to every string in a JSON-like value (dicts, lists, tuples)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(item) for item in value]
    return value


class RedactingFilter(logging.Filter):
    """Redacts what a handler emits: the message with its arguments, and the traceback (an exception's text
    often quotes the URL it failed on). The traceback is rendered here, redacted, into `exc_text`, which the
    standard Formatter uses as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def redact_all_handlers() -> None:
    """Put the filter on every handler configured now (the terminal, the debug log, Prefect's API log handler
    that ships run logs to the UI)."""
    loggers = [logging.getLogger(), *(item for item in logging.root.manager.loggerDict.values())]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if not any(isinstance(existing, RedactingFilter) for existing in handler.filters):
                handler.addFilter(RedactingFilter())
