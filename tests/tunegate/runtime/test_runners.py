"""Trials on a real Dask cluster: a scheduler and two worker processes started by the test (loopback only), and a
worker killed mid-trial. The whole flow on Dask, PostgreSQL and an MLflow server: test_scale_out.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.fixtures.runs import TINY
from tunegate.config.loading import load_config
from tunegate.config.sweep import SweepConfig
from tunegate.core.errors import InputError
from tunegate.runtime.runners import task_runner_for
from tunegate.runtime.tracking import OWNER_PID_TAG

DEMO_DATA = REPO / "demo" / "data"


def test_ray_without_its_extra_is_a_one_line_error_naming_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "prefect_ray", None)  # as where the extra is not installed: import fails
    with pytest.raises(InputError) as raised:
        task_runner_for(SweepConfig(task_runner="ray"))
    assert str(raised.value) == (
        "sweep.task_runner=ray: Ray is optional; install it with `pip install -e '.[ray]'` (prefect-ray)"
    )


def test_a_dask_runner_connects_to_the_configured_scheduler_or_builds_a_local_cluster_of_processes():
    remote = task_runner_for(SweepConfig(task_runner="dask", dask_address="tcp://127.0.0.1:8786"))
    local = task_runner_for(SweepConfig(task_runner="dask", parallel_trials=3))
    assert (remote.address, remote.cluster_kwargs) == ("tcp://127.0.0.1:8786", {})
    assert local.address is None
    assert local.cluster_kwargs == {
        "n_workers": 3,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": None,
    }


def dask_config(tmp_path: Path, address: str, n_trials: int):
    return load_config(
        REPO / "deployments" / "demo_tiny.yaml",
        [
            f"home={tmp_path / 'home'}",
            f"data.sources.0.path={DEMO_DATA / 'tickets.csv'}",
            f"data.sources.1.path={DEMO_DATA / 'replies.jsonl'}",
            *TINY,
            f"sweep.n_trials={n_trials}",
            "sweep.parallel_trials=2",
            "sweep.task_runner=dask",
            f"sweep.dask_address={address}",
        ],
    )


def trial_owners(result) -> dict[int, str]:
    import optuna

    from tunegate.sweep.study import optuna_storage

    study = optuna.load_study(study_name=result.sweep.study_name, storage=optuna_storage(result.sweep.storage))
    return {t.number: (t.state.name, t.user_attrs["owner"][OWNER_PID_TAG]) for t in study.get_trials()}


@pytest.mark.slow
def test_a_worker_killed_mid_trial_leaves_no_trial_running(tmp_path, dask_cluster):
    """Dask gives the lost trial to the surviving worker, which resumes it (same trial, same directory)."""
    import optuna

    from flows.finetune import finetune
    from tunegate.runtime.runners import flow_with_task_runner
    from tunegate.sweep.study import optuna_storage

    address, workers = dask_cluster
    config = dask_config(tmp_path, address, n_trials=2)
    outcome: dict = {}
    run = threading.Thread(target=lambda: outcome.update(result=flow_with_task_runner(finetune)(config)))
    run.start()
    storage = optuna_storage(f"journal:{config.home_path() / 'optuna' / 'journal.log'}")
    victim = wait_for_a_running_trial_in(storage, workers)
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL
    run.join(timeout=600)
    result = outcome["result"]
    owners = trial_owners(result)
    assert sorted(owners) == [0, 1]
    assert {state for state, _ in owners.values()} <= {"COMPLETE", "PRUNED"}
    survivor = next(worker for worker in workers if worker is not victim)
    assert {pid for _, pid in owners.values()} == {str(survivor.pid)}
    assert (
        optuna.load_study(study_name=result.sweep.study_name, storage=storage).get_trials(
            states=(optuna.trial.TrialState.RUNNING,)
        )
        == []
    )


def wait_for_a_running_trial_in(storage, workers: list[subprocess.Popen]) -> subprocess.Popen:
    """The worker that owns a RUNNING trial, once one does (its checkpoint directory exists by then)."""
    import optuna

    pids = {str(worker.pid): worker for worker in workers}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            summaries = optuna.get_all_study_names(storage)
        except Exception:  # the journal does not exist yet
            summaries = []
        for name in summaries:
            for trial in optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False):
                pid = trial.user_attrs.get("owner", {}).get(OWNER_PID_TAG)
                if trial.state == optuna.trial.TrialState.RUNNING and pid in pids:
                    return pids[pid]
        time.sleep(0.5)
    raise AssertionError("no trial started in a Dask worker within 300 s")


@pytest.mark.slow
def test_trials_run_in_ray_workers_when_the_extra_is_installed(tmp_path, monkeypatch):
    """The optional Ray runner, for real: a local Ray of 2 CPUs runs the two trials in its worker processes."""
    pytest.importorskip("prefect_ray", reason="the optional ray extra is not installed (pip install -e '.[ray]')")
    from prefect.settings import PREFECT_API_URL

    from flows.finetune import finetune
    from tunegate.runtime.runners import flow_with_task_runner

    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))  # Ray's workers report to this server
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    config = dask_config(tmp_path, "unused", n_trials=2).model_copy(deep=True)
    config.sweep.task_runner, config.sweep.dask_address = "ray", None
    result = flow_with_task_runner(finetune)(config)
    owners = trial_owners(result)
    assert sorted(owners) == [0, 1] and {state for state, _ in owners.values()} <= {"COMPLETE", "PRUNED"}
    assert str(os.getpid()) not in {pid for _, pid in owners.values()}  # trained in Ray's processes
    assert result.registered.version == "1"
