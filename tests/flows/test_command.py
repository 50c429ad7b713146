import subprocess
import sys
from pathlib import Path

import pytest

from flows.command import SUBCOMMANDS
from tests.conftest import REPO

# make test-fast leaves it out: starts the console script as fresh processes
pytestmark = pytest.mark.slow

TUNEGATE = Path(sys.executable).parent / "tunegate"  # the console script `make install` puts beside python


def tunegate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(TUNEGATE), *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_help_lists_every_subcommand_without_importing_the_pipeline():
    result = tunegate("--help")
    assert result.returncode == 0, result.stderr
    listed = [line.split()[0] for line in result.stdout.split("subcommands:\n")[1].split("\n\n")[0].splitlines()]
    expected = ["finetune", "prepare-data", "retrain", "serve", "stop", "status", "base", "serve-model"]
    assert listed == list(SUBCOMMANDS) == expected
    probe = "import sys, flows.command; flows.command.parser(); print('torch' in sys.modules, 'prefect' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True).stdout == (
        "False False\n"
    )


def test_a_subcommand_passes_its_options_through_and_an_unknown_one_is_refused(tmp_path):
    assert "--force" in tunegate("retrain", "--help").stdout  # the retrain flow's own parser answered
    assert tunegate("status", "--state-dir", str(tmp_path)).stdout == "nothing is running\n"
    refused = tunegate("deploy")
    assert refused.returncode == 2 and "invalid choice: 'deploy'" in refused.stderr
