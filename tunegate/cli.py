"""The command line shared by the flows: `--config`, `--set`, `--summary-out`, one-line errors.

Errors the user can act on print as one line on stderr (exit 2); anything else prints its type and
first line (exit 1). Full tracebacks and Prefect's logs go to `<home>/logs/debug.log`.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tunegate.config.loading import load_config, passwords_moved_to_environment
from tunegate.core.errors import InputError, ServiceUnavailable, one_line
from tunegate.core.secrets import RedactingFilter, redact, redact_all_handlers, redact_value
from tunegate.ops.orphans import start_guarded_temporary_server
from tunegate.reporting.data_report import failed_summary
from tunegate.runtime.retrying import PERMANENT_ERRNOS

EXIT_INPUT_ERROR, EXIT_FAILURE = 2, 1
log = logging.getLogger("tunegate")
# Libraries that log through a stderr handler of their own, set up when they are imported (MLflow's and
# transformers' do not propagate to the root): a 6-step sweep's checkpoints share one mtime and transformers'
# "mtime may not be reliable" warning, or MLflow's pickling warning at registration, reached the terminal above the
# one-line error.
OWN_HANDLER_LIBRARIES = ("transformers", "datasets", "mlflow")


def build_parser(description: str, flags: dict[str, str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="pipeline config YAML, e.g. deployments/demo.yaml")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config field, e.g. data.dedup.threshold=0.9 (repeatable; values parse as YAML)",
    )
    parser.add_argument("--summary-out", type=Path, help="write the run summary JSON here, also for failed runs")
    parser.add_argument("--verbose", action="store_true", help="also show Prefect's own logs in the terminal")
    for name, help_text in (flags or {}).items():
        parser.add_argument(f"--{name}", action="store_true", help=help_text)
    return parser


@contextmanager
def logs_routed_to(debug_log: Path, verbose: bool) -> Iterator[None]:
    """Everything (Prefect's run logs, tracebacks) goes to the debug log; the terminal keeps our report.

    Console handlers stay muted afterwards too: Prefect logs the shutdown of its temporary server at exit.
    """
    debug_log.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    if not verbose:
        for handler in root.handlers:
            handler.setLevel(logging.CRITICAL + 1)
        library_logs_to_root()
        # Python warnings too (the `py.warnings` logger): Great Expectations turns this on when its validator is
        # imported, so a run whose validate stage was cached printed library warnings above its one-line error.
        logging.captureWarnings(True)
    file_handler = logging.FileHandler(debug_log, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    file_handler.addFilter(RedactingFilter())
    redact_all_handlers()
    root.addHandler(file_handler)
    log.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(file_handler)
        file_handler.close()


def library_logs_to_root() -> None:
    """Mute the stderr handlers of `OWN_HANDLER_LIBRARIES` and let their records propagate: they reach the debug
    log like every other library's."""
    import importlib

    for name in OWN_HANDLER_LIBRARIES:
        importlib.import_module(name)  # each sets up its handler on import; the flows import them all anyway
        library = logging.getLogger(name)
        for handler in library.handlers:
            handler.setLevel(logging.CRITICAL + 1)
        library.propagate = True
    from mlflow.utils.logging_utils import disable_logging

    disable_logging()  # MLflow's own stream, which its `eprint` notices ("Created version '1' …") also print to


def run_cli(
    flow_fn: Callable[..., Any],
    render: Callable[[dict[str, Any]], str],
    description: str,
    argv: list[str] | None = None,
    flags: dict[str, str] | None = None,
    summarize: Callable[[Any], dict[str, Any]] | None = None,
) -> int:
    """Parse arguments, run the flow, print its report, write the summary; returns the exit code. `summarize`
    renders a flow's typed result as the summary JSON (a flow that returns the summary itself needs none)."""
    import prefect  # noqa: F401  (sets up Prefect's logging before we re-route it)

    args = build_parser(description, flags).parse_args(argv)
    try:
        config = passwords_moved_to_environment(load_config(args.config, args.overrides))
        check_writable_home(config.home_path())
    except InputError as exc:  # before any work, and nothing written: the one line says it all
        return report_failure(exc, None, args.summary_out)
    debug_log = config.home_path() / "logs" / "debug.log"
    with logs_routed_to(debug_log, args.verbose):
        try:
            start_guarded_temporary_server()
            result = flow_fn(config, **{name: getattr(args, name) for name in flags or {}})
            summary = summarize(result) if summarize else result
        except Exception as exc:
            return report_failure(exc, debug_log, args.summary_out)
    summary = redact_value(summary)
    print(render(summary))
    write_summary(args.summary_out, summary)
    return 0


def check_writable_home(home: Path) -> None:
    """Create home and write a probe file in it: a home the run cannot write fails now, not after training."""
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe = home / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"home {home}: cannot write there ({os.strerror(exc.errno or 0).lower()})") from exc


def report_failure(exc: Exception, debug_log: Path | None, summary_out: Path | None) -> int:
    """One line on stderr (plus where the traceback went, for bugs), a failed summary, the exit code."""
    if debug_log is not None:
        log.exception("run failed")
    exc = service_error(as_input_error(exc))
    if isinstance(exc, InputError | ServiceUnavailable):
        message = redact(one_line(exc))
        print(f"error: {message}", file=sys.stderr)
    else:
        message = redact(f"{type(exc).__name__}: {one_line(exc)}")
        print(f"error: {message} (traceback in {debug_log})", file=sys.stderr)
    write_summary(summary_out, failed_summary(message))
    return EXIT_INPUT_ERROR if isinstance(exc, InputError) else EXIT_FAILURE


def service_error(exc: Exception) -> Exception:
    """MLflow's client retries a server that does not answer (MLFLOW_HTTP_REQUEST_MAX_RETRIES, with backoff) and
    then raises an error whose first line is a 300-character urllib3 trace; say instead which server it was."""
    from mlflow.exceptions import MlflowException

    text = str(exc)
    server = re.search(r"API request to (https?://[^/\s]+)", text)
    if isinstance(exc, MlflowException) and server and re.search(r"Max retries exceeded|Connection", text):
        reason = "connection refused" if "Connection refused" in text else "no answer"
        return ServiceUnavailable(
            f"MLflow tracking server {server[1]} unreachable ({reason}, after retries); rerun when it is back: "
            "finished stages are reused"
        )
    return exc


def as_input_error(exc: Exception) -> Exception:
    """A full disk, a missing permission or a read-only file system is the user's to fix: one line naming the
    path (not a traceback pointer, as for a bug)."""
    if isinstance(exc, OSError) and exc.errno in PERMANENT_ERRNOS:
        where = exc.filename or "a file under home"
        return InputError(f"{where}: {os.strerror(exc.errno).lower()} (errno {errno.errorcode[exc.errno]})")
    return exc


def write_summary(path: Path | None, summary: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(summary), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def json_safe(value: Any) -> Any:
    """NaN and infinities become null: the summary must stay valid JSON (a bare NaN is not)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value
