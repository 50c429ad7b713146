"""The console script's plumbing (`tunegate/cli.py`): the terminal keeps the report and the one-line error; what
libraries say goes to the debug log; summaries stay valid JSON."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tunegate.cli import json_safe

# make test-fast leaves it out: starts the CLI as a fresh process
pytestmark = pytest.mark.slow

# In a fresh process (logging state is process-wide): a Python warning, a transformers warning (its own stderr
# handler, not propagating), an MLflow log line and an MLflow `eprint` notice, all inside `logs_routed_to`.
LIBRARIES_SPEAK = """
import logging, sys, warnings
from pathlib import Path
from tunegate.cli import logs_routed_to
with logs_routed_to(Path(sys.argv[1]), verbose=False):
    import transformers.utils.logging
    from mlflow.utils.logging_utils import eprint
    warnings.warn("a python warning")
    transformers.utils.logging.get_logger("transformers.trainer").warning("a transformers warning")
    logging.getLogger("mlflow.pyfunc").warning("an mlflow warning")
    eprint("an mlflow notice")
    print("the report")
"""


def test_library_warnings_and_notices_go_to_the_debug_log_and_the_terminal_keeps_the_report(tmp_path):
    debug_log = tmp_path / "debug.log"
    done = subprocess.run(
        [sys.executable, "-c", LIBRARIES_SPEAK, str(debug_log)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "the report\n", "")
    logged = debug_log.read_text()
    spoken = ["a python warning", "a transformers warning", "an mlflow warning"]
    assert [message in logged for message in spoken] == [True, True, True]


def test_a_summary_with_nan_stays_valid_json():
    summary = json_safe({"eval": {"accuracy": math.nan, "ci": [0.1, math.inf]}, "n": 3})
    assert json.loads(json.dumps(summary, allow_nan=False)) == {"eval": {"accuracy": None, "ci": [0.1, None]}, "n": 3}
