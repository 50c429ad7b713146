"""Fault class 5: every config error is one line and exit 2 before any work; a full disk, a file-size limit or
a missing permission is one line naming the path, with no retries and no torn file left; a stream input is refused."""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import threading
import time

import pandas as pd
import pytest
from prefect.settings import PREFECT_API_URL

from flows.prepare_data import prepare_data
from tasks.ingest import fingerprint_sources, ingest_sources
from tests.conftest import DEMO_DATA, REPO
from tests.faults.common import TINY, cli_command
from tests.faults.common import run_cli as run_fault_cli
from tunegate.cli import run_cli
from tunegate.config.data import SourceConfig
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


def test_a_split_that_leaves_no_test_rows_is_one_line_and_exit_2_before_training(tmp_path, capsys):
    """A test fraction too small for the data (0.0001 of each label's rows rounds to 0): known at the split, before
    the sweep."""
    argv = ["--config", CONFIG, "--set", f"home={tmp_path / 'home'}", "--set", "data.split.test_fraction=0.0001"]
    assert run_cli(prepare_data, render_data_report, "", argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: data.split leaves no test rows (train ") and line.endswith(
        "raise data.split.test_fraction=0.0001"
    )
    assert ", test 0 of " in line


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


@pytest.mark.slow  # a whole sweep of two diverging trials in a CLI process (~40 s)
def test_a_sweep_where_every_trial_diverged_is_exit_2_naming_the_trials_and_the_rate_to_lower(tmp_path):
    rates = ["sweep.learning_rate_min=50", "sweep.learning_rate_max=100", "sweep.pruner=none", "sweep.n_trials=2"]
    code, stderr, summary = run_fault_cli(
        "finetune", tmp_path / "home", tmp_path / "prefect", *TINY, *rates, session_server=True
    )
    assert code == 2
    (line,) = stderr.splitlines()  # one line: no library warning before it
    assert line.startswith("error: study support-demo-") and line.endswith(
        "none of 2 trials completed healthy (non_finite_loss: trials 0, 1); lower sweep.learning_rate_max "
        "(now 5.0e+01 .. 1.0e+02): the loss diverged"
    )
    assert summary["status"] == "failed"


def ingest_tickets(tmp_path, content: str):
    """The ingest stage (both tasks, through Prefect) on a copy of the demo tickets CSV with `content`."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "tickets.csv"
    path.write_text(content, encoding="utf-8")
    source = SourceConfig(path=str(path), columns={"text": "prompt", "category": "completion"}, labelled=True)
    pinned = fingerprint_sources([source])
    result = ingest_sources([source], pinned, str(tmp_path / "home"))
    quarantined = [json.loads(line) for line in open(result.rejected_path, encoding="utf-8")]
    return result, quarantined


TICKETS = (DEMO_DATA / "tickets.csv").read_text(encoding="utf-8")


def test_an_oversized_csv_field_is_quarantined_with_its_line_and_the_rows_after_it_are_read(tmp_path):
    clean, clean_quarantine = ingest_tickets(tmp_path / "clean", TICKETS)
    lines = TICKETS.splitlines(keepends=True)
    oversized = f'"{"x" * 200_000}",billing\n'
    result, quarantined = ingest_tickets(tmp_path / "big", "".join([*lines[:50], oversized, *lines[50:]]))
    assert result.rows_read == clean.rows_read + 1 and result.rejected == clean.rejected + 1
    assert [r["checks"] for r in quarantined if r["source_line"] == 51] == [
        ["unreadable CSV record: field larger than field limit (131072)"]
    ]
    assert [r["checks"] for r in clean_quarantine if r["source_line"] == 51] == []


def test_a_stray_quote_costs_only_its_own_line(tmp_path):
    """`"unterminated quote ticket,billing` after line 101: that line is quarantined with the reason, and the valid
    ticket after it is read (it was swallowed into the broken record: rows_read stayed what the clean file read)."""
    clean, clean_quarantine = ingest_tickets(tmp_path / "clean", TICKETS)
    lines = TICKETS.splitlines(keepends=True)
    stray = '"unterminated quote ticket,billing\n'
    result, quarantined = ingest_tickets(tmp_path / "stray", "".join([*lines[:101], stray, *lines[101:]]))
    assert result.rows_read == clean.rows_read + 1 and result.rejected == clean.rejected + 1
    assert [r["checks"] for r in quarantined if r["source_line"] == 102] == [
        ["unterminated quote: this line opens a quoted field that never closes on it"]
    ]
    assert [r["checks"] for r in clean_quarantine if r["source_line"] == 102] == []
    canonical = result.canonical.read()
    after = canonical[canonical["source_line"] == 103]
    expected = next(csv.reader([lines[101]]))
    assert after["prompt"].tolist() == [expected[0]]
