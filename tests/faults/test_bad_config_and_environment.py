"""Fault class 5: every config error is one line and exit 2 before any work; a full disk, a file-size limit or
a missing permission is one line naming the path, with no retries and no torn file left; a stream input is refused."""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
import time

import pandas as pd
import pytest
from prefect.settings import PREFECT_API_URL

from flows.prepare_data import prepare_data
from tests.conftest import REPO
from tests.faults.common import cli_command
from tunegate.cli import run_cli
from tunegate.core.errors import InputError
from tunegate.data.readers import open_source_bytes
from tunegate.reporting.data_report import render_data_report

CONFIG = str(REPO / "deployments" / "demo_tiny.yaml")
CASES = {
    "no train rows": (
        ["data.split.val_fraction=0.5", "data.split.test_fraction=0.5"],
        "data.split: val_fraction + test_fraction = 1 leaves no train rows (must be below 1)",
    ),
    "an empty split a later stage needs": (
        ["data.split.test_fraction=0"],
        "field data.split.test_fraction: Input should be greater than 0 (got 0)",
    ),
    "no LoRA ranks": (
        ["sweep.lora_ranks=[]"],
        "field sweep.lora_ranks: List should have at least 1 item after validation, not 0 (got [])",
    ),
    "a zero LoRA rank": (
        ["sweep.lora_ranks=[0, 8]"],
        "field sweep.lora_ranks.0: Input should be greater than or equal to 1 (got 0)",
    ),
    "learning-rate range upside down": (
        ["sweep.learning_rate_min=0.1"],
        "sweep.learning_rate_min 0.1 is above sweep.learning_rate_max 0.02 (for train.method lora; an unset bound "
        "is the method's default)",
    ),
    "an 8-bit base for full fine-tuning": (
        ["model.load_in_8bit=true", "train.method=full"],
        "model.load_in_8bit with train.method full: 8-bit weights cannot be trained; use lora on the 8-bit base",
    ),
    "a minimum above the method's default maximum": (
        ["sweep.learning_rate_min=0.01", "sweep.learning_rate_max=null", "train.method=full"],
        "sweep.learning_rate_min 0.01 is above sweep.learning_rate_max 0.001 (for train.method full; an unset bound "
        "is the method's default)",
    ),
    "a negative seed": (["train.seed=-1"], "field train.seed: Input should be greater than or equal to 0 (got -1)"),
    "no dedup fields": (
        ["data.dedup.fields=[]"],
        "field data.dedup.fields: List should have at least 1 item after validation, not 0 (got [])",
    ),
    "an empty home": (["home="], "field home: expected a directory path, got an empty string (got '')"),
    "a storage URL that does not parse": (
        ["sweep.storage=postgresql://me:s3cret@db:port/optuna"],
        "field sweep.storage: not a database URL (postgresql://me:***@db:port/optuna); expected e.g. "
        "sqlite:///optuna.db (got 'postgresql://me:***@db:port/optuna')",
    ),
    "a tracking URI without a host": (
        ["registry.tracking_uri=http://"],
        "field registry.tracking_uri: http:// has no host (got 'http://')",
    ),
    "a registry name MLflow rejects": (
        ["registry.model_name=team/model"],
        "field registry.model_name: Invalid model name 'team/model'. Names cannot contain '/' or ':'. "
        "(got 'team/model')",
    ),
    "--set into a scalar": (
        ["data.dedup.threshold.low=1"],
        "--set data.dedup.threshold.low: data.dedup.threshold is a value (0.85), not a section",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_config_error_is_one_line_and_exit_2_before_any_work(case, tmp_path, capsys):
    overrides, expected = CASES[case]
    argv = ["--config", CONFIG]
    for override in [f"home={tmp_path / 'home'}", *overrides]:
        argv += ["--set", override]
    assert run_cli(prepare_data, render_data_report, "", argv) == 2
    message = "" if expected.startswith("--set") else f"{CONFIG}: "
    assert capsys.readouterr().err.splitlines() == [f"error: {message}{expected}"]
    assert not (tmp_path / "home" / "data").exists()


def test_a_home_that_is_a_file_or_unwritable_fails_up_front(tmp_path, capsys):
    a_file = tmp_path / "afile"
    a_file.write_text("")
    assert run_cli(prepare_data, render_data_report, "", ["--config", CONFIG, "--set", f"home={a_file}"]) == 2
    # /sys refuses new directories even to root (tests here may run as root, which ignores chmod).
    assert run_cli(prepare_data, render_data_report, "", ["--config", CONFIG, "--set", "home=/sys/tunegate"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {CONFIG}: field home: {a_file} exists and is not a directory (got '{a_file}')",
        "error: home /sys/tunegate: cannot write there (operation not permitted)",
    ]


def test_a_config_file_that_is_not_utf8_names_its_line(tmp_path, capsys):
    config = tmp_path / "latin1.yaml"
    config.write_bytes(b"name: demo\n# caf\xe9\ndata: {sources: [{path: a.csv}]}\n")
    assert run_cli(prepare_data, render_data_report, "", ["--config", str(config)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: {config} line 2: not UTF-8 (byte 0xe9)"]


@pytest.mark.slow
def test_a_file_size_limit_is_one_line_naming_the_file_and_leaves_no_torn_file(tmp_path):
    """`ulimit -f 600` (KiB): the canonical table (~770 KB) cannot be written; the run says where, once."""
    home = tmp_path / "home"
    command = " ".join(shlex.quote(part) for part in cli_command("prepare_data", home))
    environment = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "HF_HUB_OFFLINE": "1"}
    finished = subprocess.run(
        ["bash", "-c", f"ulimit -f 600; exec {command}"], cwd=REPO, env=environment, capture_output=True, text=True
    )
    canonical = next((home / "data").glob("ingest-*")) / "canonical.parquet"
    assert finished.returncode == 2
    assert finished.stderr.splitlines() == [f"error: {canonical}: file too large (errno EFBIG)"]
    assert [p.name for p in canonical.parent.iterdir()] == []  # no partial file, no torn table
    assert (home / "logs" / "debug.log").read_text().count("Retry") == 0


def test_a_fifo_source_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "tickets.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(InputError) as refused:
        open_source_bytes(str(fifo))
    assert (
        str(refused.value) == f"{fifo}: not a regular file (a FIFO, socket or device); write the data to a file first"
    )


def test_a_file_that_grows_while_read_is_refused(tmp_path):
    growing = tmp_path / "tickets.jsonl"
    growing.write_text('{"prompt": "a", "completion": "b"}\n' * 200_000)
    writing = threading.Event()
    stop = threading.Event()

    def append() -> None:
        with open(growing, "a") as handle:
            while not stop.is_set():
                handle.write('{"prompt": "c", "completion": "d"}\n')
                handle.flush()
                writing.set()
                time.sleep(0)

    writer = threading.Thread(target=append)
    writer.start()
    writing.wait()
    refusals: list[InputError] = []
    try:
        # A writer thread shares the GIL with the reader, so one 7 MB read can complete between two of its writes
        # (it did once in CI); 50 reads against a writer that never sleeps make a read with no write in it
        # vanishingly rare, and any one refusal is what this test needs.
        for _ in range(50):
            try:
                open_source_bytes(str(growing))
            except InputError as exc:
                refusals.append(exc)
                break
    finally:
        stop.set()
        writer.join()
    assert len(refusals) == 1
    refused = refusals[0]
    assert str(refused).startswith(f"{growing}: the file changed while it was read (")
    assert str(refused).endswith("bytes); point the config at a finished file")
    assert pd.read_json(growing, lines=True).shape[1] == 2
