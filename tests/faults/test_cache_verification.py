"""Fault class 1: a cache hit is only used when the outputs it references are there and unchanged; the cache and
its locks live under home and go with it; two processes sharing a home write through unique temporary files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pandas as pd
import pytest

from flows.prepare_data import prepare_data
from tests.conftest import REPO
from tests.faults.common import cli_command, cli_environment, demo_overrides
from tunegate.config.loading import load_config
from tunegate.core.fingerprint import fingerprint_file
from tunegate.reporting.data_report import data_summary

# Whole data-flow runs and CLI processes: `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.slow

STAGES = ["ingest", "validate", "dedup", "split"]
# Each repetition starts two CLIs with their own temporary Prefect servers (~12 s alone, 40-60 s in the 2-worker suite);
# 2 keep the suite near its 15-minute budget (5 of 5 passed when measured for issue 11, 3 of 3 in suite runs since).
REPETITIONS = 2


def data_config(home):
    return load_config(REPO / "deployments" / "demo_tiny.yaml", demo_overrides(home))


def intact(summary: dict) -> dict[str, bool]:
    fingerprints = summary["data"]["fingerprints"]
    return {name: fingerprint_file(summary["data"]["files"][name]) == fingerprints[name] for name in fingerprints}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("cache-home") / "home"
    return home, data_summary(prepare_data(data_config(home)))


def test_deleting_home_deletes_the_cache_and_the_rerun_rewrites_every_output(first_run):
    home, first = first_run
    assert sorted(p.name for p in (home / "cache").iterdir()) == ["locks", "results"]
    shutil.rmtree(home)
    again = data_summary(prepare_data(data_config(home)))
    assert again["cache_hits"] == []
    assert intact(again) == {"train": True, "val": True, "test": True}
    assert again["data"]["fingerprints"] == first["data"]["fingerprints"]
    assert data_summary(prepare_data(data_config(home)))["cache_hits"] == STAGES


def test_a_truncated_cached_table_reruns_its_stage_and_is_restored(first_run):
    home, first = first_run
    train = first["data"]["files"]["train"]
    with open(train, "r+b") as handle:
        handle.truncate(os.path.getsize(train) // 2)
    again = data_summary(prepare_data(data_config(home)))
    assert again["cache_hits"] == ["ingest", "validate", "dedup"]
    assert fingerprint_file(train) == first["data"]["fingerprints"]["train"]
    assert len(pd.read_parquet(train)) == first["data"]["train"]


def test_a_deleted_quarantine_file_reruns_validation(first_run):
    home, first = first_run
    os.remove(first["data"]["files"]["quarantine"])
    again = data_summary(prepare_data(data_config(home)))
    assert again["cache_hits"] == ["ingest", "dedup", "split"]
    assert os.path.exists(first["data"]["files"]["quarantine"])


def test_two_processes_with_different_prefect_homes_share_one_home(tmp_path):
    """Twice in a row (five times when measured for issue 11): both exit 0 and every output's bytes match its
    fingerprint; no temporary file is left."""
    home = tmp_path / "home"
    outcomes = []
    for attempt in range(REPETITIONS):
        shutil.rmtree(home, ignore_errors=True)
        processes = [
            subprocess.Popen(
                cli_command("prepare_data", home, summary=tmp_path / f"summary-{attempt}-{side}.json"),
                cwd=REPO,
                env=cli_environment(tmp_path / f"prefect-{side}"),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for side in ("a", "b")
        ]
        codes = [process.wait(timeout=300) for process in processes]
        summaries = [json.loads((tmp_path / f"summary-{attempt}-{side}.json").read_text()) for side in ("a", "b")]
        outcomes.append((codes, [intact(summary) for summary in summaries]))
        assert list((home / "data").rglob("*.partial")) == []
    assert outcomes == [([0, 0], [{"train": True, "val": True, "test": True}] * 2)] * REPETITIONS
