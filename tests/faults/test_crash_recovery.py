"""Fault class 3: a process killed at any point leaves nothing that fails or misleads the next run. Dead trials are
failed and re-queued, dead MLflow runs ended, torn files skipped or cut back, and no server outlives its CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
from prefect.settings import PREFECT_API_URL
from safetensors.torch import save_file

from flows.prepare_data import prepare_data
from tasks.sweep import search_space
from tests.conftest import REPO
from tests.faults.common import TINY, cli_command, cli_environment, demo_overrides, run_cli
from tests.fixtures.registry import register, wait_for_version
from tunegate.config.loading import load_config
from tunegate.config.sweep import SweepConfig
from tunegate.registry.versions import registry_lock
from tunegate.reporting.data_report import data_summary
from tunegate.runtime.tracking import end_orphaned_runs, experiment_id, mlflow_client
from tunegate.sweep.plots import read_report_stamp
from tunegate.sweep.study import open_study, optuna_storage
from tunegate.sweep.trials import QUEUED_ATTR, ask_new_point, requeue_orphaned_trials
from tunegate.training.budget import fixed_plan
from tunegate.training.run_watch import last_complete_checkpoint

SWEEP = SweepConfig(seed=0)
PLAN = fixed_plan(9, [3, 9])

ASK_AND_DIE = """
import os, signal, sys
from tunegate.config.search_space import search_space
from tunegate.sweep.study import open_study
from tunegate.sweep.trials import ask_new_point
from tunegate.training.budget import fixed_plan
from tunegate.config.sweep import SweepConfig
study = open_study("s", sys.argv[1], SweepConfig(seed=0), fixed_plan(9, [3, 9]))
trial = ask_new_point(study, search_space(SweepConfig(seed=0)))
print(trial.params["lora_r"], trial.params["learning_rate"], flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def run_and_die(script: str, *args: str) -> str:
    finished = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, capture_output=True, text=True)
    assert finished.returncode == -signal.SIGKILL, finished.stderr
    return finished.stdout


@pytest.mark.slow
def test_a_trial_whose_process_was_killed_is_failed_and_its_point_queued_again(tmp_path):
    storage = f"journal:{tmp_path / 'journal.log'}"
    rank, rate = run_and_die(ASK_AND_DIE, storage).split()
    study = open_study("s", storage, SWEEP, PLAN)
    assert [t.state.name for t in study.get_trials()] == ["RUNNING"]
    assert requeue_orphaned_trials(study) == [0]
    again = ask_new_point(study, search_space(SWEEP))
    assert (again.params["lora_r"], again.params["learning_rate"]) == (int(rank), float(rate))
    assert again.user_attrs[QUEUED_ATTR] == "again after trial 0 died"
    assert [t.state.name for t in study.get_trials()] == ["FAIL", "RUNNING"]
    assert requeue_orphaned_trials(study) == []  # this process is alive: its running trial is left alone


def test_a_resumed_sweep_never_redraws_a_point_it_has(tmp_path):
    storage = f"journal:{tmp_path / 'journal.log'}"
    first = open_study("s", storage, SWEEP, PLAN)
    for value in (0.5, 0.6):
        trial = ask_new_point(first, search_space(SWEEP))
        first.tell(trial.number, value)
    resumed = open_study("s", storage, SWEEP, PLAN)  # a new run: a new sampler, seeded the same
    points = [tuple(t.params.values()) for t in resumed.get_trials()]
    drawn = ask_new_point(resumed, search_space(SWEEP))
    assert tuple(drawn.params.values()) not in points
    assert len(set(points)) == 2


def test_a_torn_journal_line_is_cut_and_the_study_goes_on(tmp_path):
    path = tmp_path / "journal.log"
    study = open_study("s", f"journal:{path}", SWEEP, PLAN)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    whole = path.read_bytes()
    path.write_bytes(whole[:-25])  # the last append was cut mid-line (a kill -9 while writing)
    resumed = optuna.load_study(study_name="s", storage=optuna_storage(f"journal:{path}"))
    resumed.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    reloaded = optuna.load_study(study_name="s", storage=optuna_storage(f"journal:{path}"))
    assert [t.state.name for t in reloaded.get_trials()] == ["COMPLETE", "COMPLETE", "RUNNING", "COMPLETE", "COMPLETE"]
    assert len(list(tmp_path.glob("journal.log.cut-*"))) == 1


CREATE_RUN_AND_DIE = """
import os, signal, sys
from tunegate.runtime.tracking import experiment_id, mlflow_client, start_child_run
client = mlflow_client(sys.argv[1])
start_child_run(client, experiment_id(client, "faults", __import__("pathlib").Path(sys.argv[2])), None, "doomed")
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.slow
def test_an_mlflow_run_whose_process_was_killed_is_ended_by_the_next_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_and_die(CREATE_RUN_AND_DIE, uri, str(tmp_path))
    client = mlflow_client(uri)
    experiment = experiment_id(client, "faults", tmp_path)
    live = client.create_run(experiment, run_name="another-host", tags={"tunegate.host": "elsewhere"})
    ended = end_orphaned_runs(client, experiment)
    statuses = {run.info.run_name: run.info.status for run in client.search_runs([experiment])}
    assert len(ended) == 1
    assert statuses == {"doomed": "KILLED", "another-host": "RUNNING"}
    client.set_terminated(live.info.run_id)


def write_checkpoint(path: Path, step: int) -> None:
    path.mkdir(parents=True)
    save_file({"w": torch.full((64, 64), float(step))}, str(path / "adapter_model.safetensors"))
    torch.save({"step": step}, path / "optimizer.pt")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))


@pytest.mark.parametrize("torn", ["trainer_state.json", "adapter_model.safetensors", "optimizer.pt"])
def test_a_truncated_checkpoint_file_is_skipped_for_the_one_before(tmp_path, torn):
    write_checkpoint(tmp_path / "checkpoint-4", 4)
    write_checkpoint(tmp_path / "checkpoint-8", 8)
    file = tmp_path / "checkpoint-8" / torn
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")


def test_a_corrupt_report_stamp_means_drawing_again(tmp_path):
    stamp = tmp_path / "sweep_report.json"
    stamp.write_text('{"key": "abc", "drawn": ["optimiz')
    assert read_report_stamp(stamp) == {}
    stamp.write_text('{"key": "abc", "drawn": ["contour"]}')
    assert read_report_stamp(stamp) == {"key": "abc", "drawn": ["contour"]}


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_a_cli_run_killed_with_sigkill_leaves_no_server_behind(tmp_path):
    run = subprocess.Popen(
        cli_command("prepare_data", tmp_path / "home"),
        cwd=REPO,
        env=cli_environment(tmp_path / "prefect"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline, servers = time.monotonic() + 120, []
    while not servers and time.monotonic() < deadline and run.poll() is None:
        servers = [pid for pid in children_of(run.pid) if b"uvicorn" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        time.sleep(0.2)
    assert servers, "the CLI never started its temporary Prefect server"
    while not (tmp_path / "home" / "data").exists() and time.monotonic() < deadline:  # the run is under way
        time.sleep(0.2)
    run.send_signal(signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in servers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [pid for pid in servers if alive(pid)] == []


@pytest.mark.slow
def test_a_finetune_run_killed_mid_trial_completes_on_rerun_with_one_version(tmp_path):
    home, prefect_home = tmp_path / "home", tmp_path / "prefect"
    run = subprocess.Popen(
        cli_command("finetune", home, *TINY),
        cwd=REPO,
        env=cli_environment(prefect_home, session_server=True),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and run.poll() is None and not list(home.glob("trials/*/checkpoints/*")):
        time.sleep(0.2)
    assert run.poll() is None, "the run ended before its first checkpoint"
    run.send_signal(signal.SIGKILL)
    run.wait()
    code, stderr, summary = run_cli("finetune", home, prefect_home, *TINY, session_server=True)
    assert code == 0, stderr
    client = mlflow_client(summary["mlflow"]["tracking_uri"])
    experiment = summary["mlflow"]["experiment_id"]
    assert client.search_runs([experiment], filter_string="attributes.status = 'RUNNING'") == []
    killed = client.search_runs([experiment], filter_string="attributes.status = 'KILLED'")
    assert {run.data.tags.get("ended_by") for run in killed} >= {"a later run: its process had died"}
    versions = client.search_model_versions(f"name = '{summary['registry']['model_name']}'")
    assert [(str(v.version), "promotion_reason" in v.tags) for v in versions] == [("1", True)]
    study = optuna.load_study(
        study_name=summary["sweep"]["study_name"], storage=optuna_storage(summary["sweep"]["storage"])
    )
    states = [t.state.name for t in study.get_trials()]
    assert states.count("FAIL") == 1 and states.count("RUNNING") == 0
    assert summary["sweep"]["n_trials"] == 2


REGISTER_AND_BLOCK = """
import json, sys
from tests.fixtures.registry import register
from tunegate.config.loading import load_config
from tunegate.core.refs import TableRef
from tunegate.runtime.tracking import open_pipeline_run
setup = json.loads(sys.argv[1])
config = load_config(setup["config"], [f"home={setup['home']}"])
tracking = open_pipeline_run(config, "doomed-flow-run", "doomed", "data-fp")
register(config, tracking, TableRef.model_validate(setup["rows"]), setup["adapter"], 5)
"""


def strand_a_version(config, tracking, rows, adapter: str) -> str:
    """A run (its own process and MLflow run) registers `adapter` and is killed with SIGKILL before deciding: the
    version exists without an alias or a reason. Then, as the next pipeline run does, its dead MLflow run is ended."""
    client = mlflow_client(tracking.uri)
    setup = {
        "config": str(REPO / "deployments" / "demo_tiny.yaml"),
        "home": config.home,
        "rows": rows.model_dump(),
        "adapter": adapter,
    }
    environment = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    with registry_lock("concurrent-model"):  # the child registers its version, then waits here for the decision
        child = subprocess.Popen(
            [sys.executable, "-c", REGISTER_AND_BLOCK, json.dumps(setup)], cwd=REPO, env=environment
        )
        version = wait_for_version(client, "concurrent-model", SimpleNamespace(done=lambda: child.poll() is not None))
        child.send_signal(signal.SIGKILL)
        child.wait()
    stranded = client.get_model_version("concurrent-model", version)
    assert (stranded.aliases, "promotion_reason" in stranded.tags) == ([], False)
    assert len(end_orphaned_runs(client, tracking.experiment_id)) == 1
    return version


@pytest.mark.slow
def test_a_registration_killed_before_its_decision_is_finished_by_the_rerun(registry_setup):
    config, tracking, rows, (adapter, _) = registry_setup
    version = strand_a_version(config, tracking, rows, adapter)
    finished = register(config, tracking, rows, adapter, 5)  # the rerun: same adapter, same test rows
    client = mlflow_client(tracking.uri)
    versions = [client.get_model_version("concurrent-model", v.version) for v in client.search_model_versions("")]
    assert [(str(v.version), v.aliases, "promotion_reason" in v.tags) for v in versions] == [
        (version, ["champion"], True)
    ]
    assert finished.version == version


@pytest.mark.slow
def test_a_version_stranded_by_a_dead_run_gets_a_reason_from_the_next_registration(registry_setup):
    config, tracking, rows, (adapter, other_adapter) = registry_setup
    version = strand_a_version(config, tracking, rows, adapter)
    register(config, tracking, rows, other_adapter, 5)  # another model: the stranded version is not reused
    client = mlflow_client(tracking.uri)
    stranded = client.get_model_version("concurrent-model", version)
    assert (stranded.aliases, stranded.tags["promotion_reason"]) == (
        [],
        "not promoted: the run that registered it ended KILLED before the decision",
    )
    assert len(client.search_model_versions("name = 'concurrent-model'")) == 2


@pytest.mark.slow
def test_a_champion_whose_artifacts_are_gone_leaves_the_next_version_judged_against_the_base(registry_setup):
    """`rm -rf <home>/mlartifacts` after v1 became champion: v2 cannot read v1's row scores; it is judged against the
    base, the reason says the champion was unavailable, and it gets an alias (never a version without one)."""
    config, tracking, rows, (adapter, other_adapter) = registry_setup
    assert register(config, tracking, rows, adapter, 5).aliases == ["champion"]
    shutil.rmtree(Path(config.home) / "mlartifacts")
    second = register(config, tracking, rows, other_adapter, 10)
    assert (second.version, second.aliases, second.promoted) == ("2", ["champion"], True)
    assert second.reason.startswith("promoted: accuracy 1.000 vs base 0.000")
    assert "; champion v1 unavailable (" in second.reason and second.reason.endswith("): judged against the base")
    client = mlflow_client(tracking.uri)
    assert client.get_model_version("concurrent-model", "2").tags["promotion_reason"] == second.reason


@pytest.mark.slow
# Killed once validate has written its table: ingest is reused from cache, validate reruns (its record was never
# committed), dedup and split run for the first time.
@pytest.mark.parametrize("killed_after", ["data/validate-*/valid.parquet"])
def test_a_data_run_killed_mid_stage_completes_on_rerun_with_the_same_outputs(tmp_path, killed_after):
    """Killed once ingest (then validate) has written its table: the rerun reuses what finished and its outputs
    match an uninterrupted run byte for byte."""
    home, prefect_home = tmp_path / "home", tmp_path / "prefect"
    run = subprocess.Popen(
        cli_command("prepare_data", home),
        cwd=REPO,
        env=cli_environment(prefect_home, session_server=True),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and run.poll() is None and not list(home.glob(killed_after)):
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL
    code, stderr, resumed = run_cli("prepare_data", home, prefect_home, session_server=True)
    assert code == 0, stderr
    config = load_config(REPO / "deployments" / "demo_tiny.yaml", demo_overrides(tmp_path / "clean"))
    uninterrupted = data_summary(prepare_data(config))
    assert resumed["data"]["fingerprints"] == uninterrupted["data"]["fingerprints"]
    assert [resumed["data"][key] for key in ("train", "val", "test", "quarantined")] == [
        uninterrupted["data"][key] for key in ("train", "val", "test", "quarantined")
    ]
    assert list(home.rglob("*.partial")) == []
