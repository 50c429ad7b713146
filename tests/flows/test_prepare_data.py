"""The data flow end to end on the demo data, on the real Prefect engine, GX and files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import PREFECT_API_URL

from flows.prepare_data import prepare_data
from tests.conftest import DEMO_DATA, REPO
from tunegate.config.loading import load_config
from tunegate.reporting.data_report import data_summary

# Whole data-flow runs and CLI processes: `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.slow

STAGE_TASKS = {
    "ingest_sources": "ingest",
    "validate_rows": "validate",
    "deduplicate_rows": "dedup",
    "split_rows": "split",
}
PLANTED = json.loads((DEMO_DATA / "planted.json").read_text())


def demo_config(home: Path, data_dir: Path = DEMO_DATA, *overrides: str):
    return load_config(
        REPO / "deployments" / "demo_tiny.yaml",
        [
            f"home={home}",
            f"data.sources.0.path={data_dir / 'tickets.csv'}",
            f"data.sources.1.path={data_dir / 'replies.jsonl'}",
            *overrides,
        ],
    )


def run_and_read_states(config) -> tuple[dict, dict[str, str]]:
    """Run the flow; return its summary and the state name of each stage task, read from the Prefect API."""
    state = prepare_data(config, return_state=True)
    summary = data_summary(state.result())
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    states = {
        STAGE_TASKS[run.name.rsplit("-", 1)[0]]: run.state.name
        for run in runs
        if run.name.rsplit("-", 1)[0] in STAGE_TASKS
    }
    return summary, states


@pytest.fixture(scope="module")
def demo_state(tmp_path_factory):
    home = tmp_path_factory.mktemp("demo-home")
    return prepare_data(demo_config(home), return_state=True)


@pytest.fixture(scope="module")
def demo_run(demo_state):
    return data_summary(demo_state.result())


def test_demo_counts_equal_what_the_generator_planted(demo_run):
    data = demo_run["data"]
    totals = PLANTED["totals"]
    assert {k: data[k] for k in totals} == totals
    assert data["test_train_near_duplicates"] == 0
    parts = ["train", "val", "test", "quarantined", "exact_duplicates", "near_duplicates"]
    assert data["rows_read"] == sum(data[k] for k in parts)
    assert (data["train"], data["val"], data["test"]) == (2880, 360, 360)
    assert demo_run["status"] == "ok" and demo_run["validation"]["success"] is True


def test_every_planted_duplicate_is_found_with_its_original(demo_run):
    found = pd.read_parquet(demo_run["data"]["files"]["duplicates"])
    found["file"] = found["source"].map(lambda p: Path(p).name)
    found["original_line"] = found["duplicate_of"].str.rsplit(":", n=1).str[1].astype(int)
    actual = sorted(zip(found["file"], found["source_line"], found["original_line"], found["kind"], strict=False))
    expected = sorted(
        (name, d["line"], d["original_line"], d["expected"])
        for name, planted in PLANTED["files"].items()
        for d in planted["duplicates"]
    )
    assert actual == expected


def test_every_planted_problem_is_quarantined_at_its_line(demo_run):
    with open(demo_run["data"]["files"]["quarantine"]) as handle:
        quarantined = [json.loads(line) for line in handle]
    actual = sorted((Path(q["source"]).name, q["source_line"]) for q in quarantined)
    expected = sorted((name, q["line"]) for name, f in PLANTED["files"].items() for q in f["quarantined"])
    assert actual == expected
    assert all(q["checks"] and q["raw"] is not None for q in quarantined)


def test_data_docs_site_is_built(demo_run):
    assert Path(demo_run["validation"]["data_docs"]).is_file()


def test_the_run_publishes_a_table_artifact_with_the_accounting(demo_state):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    # Filtered by this run: the session's Prefect server also serves the other pytest-xdist worker's runs.
    this_run = ArtifactFilterFlowRunId(any_=[demo_state.state_details.flow_run_id])
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["data-report"]), flow_run_id=this_run)
        )
    [artifact] = artifacts
    table = json.loads(artifact.data)
    rows = {(row["section"], row["item"]): row["value"] for row in table}
    assert rows[("rows", "rows_read")] == 3766
    assert rows[("rows", "near_duplicates")] == 45
    assert rows[("failed check", "label_in_label_set")] == 12


def test_cache_hits_then_reruns_exactly_what_changed(tmp_path):
    data_dir = tmp_path / "data"
    shutil.copytree(DEMO_DATA, data_dir)
    home = tmp_path / "home"
    config = demo_config(home, data_dir)
    _, first = run_and_read_states(config)
    assert first == dict.fromkeys(["ingest", "validate", "dedup", "split"], "Completed")

    summary, again = run_and_read_states(config)
    assert again == dict.fromkeys(["ingest", "validate", "dedup", "split"], "Cached")
    assert summary["cache_hits"] == ["ingest", "validate", "dedup", "split"]

    _, threshold_changed = run_and_read_states(demo_config(home, data_dir, "data.dedup.threshold=0.9"))
    assert threshold_changed == {"ingest": "Cached", "validate": "Cached", "dedup": "Completed", "split": "Completed"}

    tickets = data_dir / "tickets.csv"
    content = tickets.read_bytes()
    position = content.index(b"Nova robot vacuum")
    tickets.write_bytes(content[:position] + b"n" + content[position + 1 :])  # one byte, same path
    _, byte_changed = run_and_read_states(config)
    assert byte_changed == dict.fromkeys(["ingest", "validate", "dedup", "split"], "Completed")


PYTHON_M = [sys.executable, "-m", "flows.prepare_data"]
CONSOLE_SCRIPT = [str(Path(sys.executable).parent / "tunegate"), "prepare-data"]  # installed by `make install`


def run_cli_process(*args: str, cwd: Path = REPO, command: list[str] = PYTHON_M) -> subprocess.CompletedProcess:
    """The CLI in a new process, against the session's Prefect server, sharing its result store."""
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_in_a_new_process_is_served_from_cache(demo_run, tmp_path):
    home = Path(demo_run["data"]["files"]["canonical"]).parents[2]
    summary_path = tmp_path / "summary.json"
    result = run_cli_process(
        "--config",
        "deployments/demo_tiny.yaml",
        "--set",
        f"home={home}",
        "--set",
        f"data.sources.0.path={DEMO_DATA / 'tickets.csv'}",
        "--set",
        f"data.sources.1.path={DEMO_DATA / 'replies.jsonl'}",
        "--summary-out",
        str(summary_path),
        command=CONSOLE_SCRIPT,
    )
    assert result.returncode == 0, result.stderr
    assert "rows_read                         3766" in result.stdout
    summary = json.loads(summary_path.read_text())
    assert summary["cache_hits"] == ["ingest", "validate", "dedup", "split"]
    assert summary["data"]["train"] == demo_run["data"]["train"]


def test_cli_input_error_is_one_line_and_a_failed_summary(tmp_path):
    summary_path = tmp_path / "summary.json"
    result = run_cli_process(
        "--config",
        "deployments/demo_tiny.yaml",
        "--set",
        f"home={tmp_path / 'home'}",
        "--set",
        "data.sources.0.path=demo/data/no_such_file.csv",
        "--summary-out",
        str(summary_path),
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: demo/data/no_such_file.csv: file not found"]
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "failed"
    assert summary["error"] == "demo/data/no_such_file.csv: file not found"


def test_data_contract_failure_fails_the_run_naming_the_first_lines(tmp_path, capsys):
    from tunegate.cli import run_cli
    from tunegate.reporting.data_report import render_data_report

    summary_path = tmp_path / "summary.json"
    code = run_cli(
        prepare_data,
        render_data_report,
        "test",
        [
            "--config",
            str(REPO / "deployments" / "demo_tiny.yaml"),
            "--set",
            f"home={tmp_path / 'home'}",
            "--set",
            f"data.sources.0.path={DEMO_DATA / 'tickets.csv'}",
            "--set",
            f"data.sources.1.path={DEMO_DATA / 'replies.jsonl'}",
            "--set",
            "data.validation.max_quarantine_fraction=0.005",
            "--summary-out",
            str(summary_path),
        ],
    )
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(error) == 1
    assert error[0].startswith(
        "error: quarantined 41 of 3766 rows (1.1%), above data.validation.max_quarantine_fraction=0.5%; first: "
    )
    assert "tickets.csv line " in error[0]
    assert json.loads(summary_path.read_text())["status"] == "failed"


def test_flow_parameter_schema_is_the_config_model_with_descriptions():
    schema = prepare_data.parameters.model_dump()
    assert list(schema["properties"]) == ["config"]
    definitions = schema["definitions"]
    assert definitions["DedupConfig"]["properties"]["threshold"]["description"] == (
        "Jaccard similarity of word shingles at which two rows are near duplicates."
    )
    undocumented = [
        f"{model}.{name}"
        for model, body in definitions.items()
        for name, field in body["properties"].items()
        if not field.get("description")
    ]
    assert undocumented == []


def test_the_demo_preference_pairs_are_checked_and_deduplicated_as_planted(tmp_path):
    config = load_config(
        REPO / "deployments" / "demo_tiny.yaml",
        [f"home={tmp_path}", f'data.sources=[{{"path": "{DEMO_DATA / "preferences.jsonl"}"}}]'],
    )
    summary = data_summary(prepare_data(config))
    planted = PLANTED["preferences"]
    data = summary["data"]
    assert (data["rows_read"], data["quarantined"], data["exact_duplicates"], data["near_duplicates"]) == (
        planted["rows"],
        len(planted["quarantined"]),
        len(planted["duplicates"]),
        0,
    )
    with open(data["files"]["quarantine"]) as handle:
        quarantined = sorted((q["source_line"], q["checks"]) for q in map(json.loads, handle))
    assert quarantined == [(q["line"], [q["problem"]]) for q in planted["quarantined"]]
    found = pd.read_parquet(data["files"]["duplicates"])
    assert sorted(found["source_line"]) == sorted(d["line"] for d in planted["duplicates"])
    train = pd.read_parquet(data["files"]["train"])
    assert set(train["shape"]) == {"preference"} and train["rejected"].notna().all()
