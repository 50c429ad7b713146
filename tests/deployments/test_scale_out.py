"""Scale-out on real engines, loopback only: what `make serve DB=postgres` starts (a PostgreSQL cluster, the
Prefect server on it, a process worker, an MLflow tracking server on it that serves the artifacts), a Dask
scheduler with 2 worker processes, and the finetune flow with 2 trials at a time on the cluster, its study in
PostgreSQL, a refit trained by 2 processes (DDP over gloo) and its runs and model on the server. Every process
started here is ended afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import DEMO_DATA, REPO
from tests.fixtures.runs import TINY
from tunegate.config.loading import load_config
from tunegate.ops.processes import free_port, running
from tunegate.ops.services import Ports, start, stop
from tunegate.runtime.tracking import mlflow_client

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shared_state() -> Iterator[dict]:
    """The services on PostgreSQL, under a directory the `postgres` user can reach (pytest's own tmp is 0700);
    PGPASSWORD is set for this process and the Dask workers started after it (clients read it from there)."""
    state_dir = Path(tempfile.mkdtemp(prefix="tunegate-scale-out-"))
    state_dir.chmod(0o755)
    ports = Ports(free_port(), free_port(), free_port())
    started = start(state_dir, ports, extra_env={"HF_HUB_OFFLINE": "1"}, db="postgres")
    by_name = {service.name: service for service in started}
    password = (state_dir / "postgres" / "password").read_text().strip()
    previous = os.environ.get("PGPASSWORD")
    os.environ["PGPASSWORD"] = password
    family = [psutil.Process(s.pid) for s in started]
    try:
        yield {
            "optuna": f"postgresql://tunegate@127.0.0.1:{ports.postgres}/optuna",
            "mlflow": by_name["mlflow-ui"].url,
            "state_dir": state_dir,
            "password": password,
        }
    finally:
        if previous is None:
            os.environ.pop("PGPASSWORD", None)
        else:
            os.environ["PGPASSWORD"] = previous
        family += [child for s in running(state_dir) for child in psutil.Process(s.pid).children(recursive=True)]
        assert sorted(stop(state_dir)) == ["mlflow-ui", "postgres", "prefect-server", "prefect-worker"]
        assert [p.pid for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []


def test_trials_on_dask_share_a_postgresql_study_and_the_model_is_served_by_the_tracking_server(
    tmp_path,
    shared_state,
    dask_cluster,
):
    import optuna

    from flows.finetune import finetune
    from tunegate.runtime.runners import flow_with_task_runner
    from tunegate.sweep.study import optuna_storage

    address, workers = dask_cluster
    config = load_config(
        REPO / "deployments" / "demo_tiny.yaml",
        [
            f"home={tmp_path / 'home'}",
            f"data.sources.0.path={DEMO_DATA / 'tickets.csv'}",
            f"data.sources.1.path={DEMO_DATA / 'replies.jsonl'}",
            *TINY,
            "sweep.n_trials=2",
            "sweep.parallel_trials=2",
            "sweep.task_runner=dask",
            f"sweep.dask_address={address}",
            f"sweep.storage={shared_state['optuna']}",
            f"registry.tracking_uri={shared_state['mlflow']}",
            "sweep.final=refit",
            "train.processes=2",
        ],
    )
    result = flow_with_task_runner(finetune)(config)

    # Every trial is in the shared study, run by a Dask worker (both of them, two at a time), none left RUNNING.
    study = optuna.load_study(study_name=result.sweep.study_name, storage=optuna_storage(shared_state["optuna"]))
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == [0, 1]
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    assert {t.user_attrs["owner"]["tunegate.pid"] for t in trials} == {str(w.pid) for w in workers}
    # The pruner's input: each worker reported its trial's objective to the study at the rungs it reached (step 2;
    # step 6 too when it completed).
    assert all(2 in t.intermediate_values for t in trials)
    assert all(6 in t.intermediate_values for t in trials if t.state.name == "COMPLETE")

    # The runs are nested on the server, and the artifacts went through it (to its destination, not to home).
    client = mlflow_client(shared_state["mlflow"])
    nested = client.search_runs(
        [result.tracking.experiment_id], f"tags.mlflow.parentRunId = '{result.tracking.parent_run_id}'"
    )
    trials = [run for run in nested if "optuna.trial" in run.data.tags]
    assert sorted(run.data.tags["optuna.trial"] for run in trials) == ["0", "1"]
    # The refit trained as 2 processes; rank 0 logged its metrics to its run on the server.
    (refit,) = [run for run in nested if run.info.run_name.startswith("final-training")]
    assert refit.data.params["processes"] == "2" and refit.info.status == "FINISHED"
    assert "train_loss" in refit.data.metrics and "val_loss" in refit.data.metrics
    assert result.trained.source == "refit" and (Path(result.trained.adapter.path).parent / "result.json").exists()
    assert client.get_experiment(result.tracking.experiment_id).artifact_location.startswith("mlflow-artifacts:/")
    assert list((shared_state["state_dir"] / "mlartifacts").rglob("adapter_model.safetensors")) != []
    assert not (tmp_path / "home" / "mlartifacts").exists()
    assert (result.registered.version, result.registered.aliases) == ("1", ["champion"])

    # Another process, with nothing but the server's address, loads the champion and answers.
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import mlflow, pandas; model = mlflow.pyfunc.load_model('models:/support-demo@champion'); "
            "print(len(model.predict(pandas.DataFrame({'prompt': ['my card was charged twice']}))))",
        ],
        env={**os.environ, "MLFLOW_TRACKING_URI": shared_state["mlflow"], "PGPASSWORD": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.strip().splitlines()[-1] == "1"
    # The password is in no file of ours but its own 0600 one, and in no log.
    logs = "".join(path.read_text(errors="replace") for path in (shared_state["state_dir"] / "logs").glob("*.log"))
    assert shared_state["password"] not in logs
