"""Fault class 4: services down. An MLflow tracking server that goes away briefly is retried (MLflow's client
backs off); one that stays away fails the run with one line naming it, and the rerun once it is back adds exactly
one model version. An Optuna storage that cannot be opened is retried, then named in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL

from tests.conftest import REPO
from tests.faults.common import TINY, cli_command
from tunegate.config.sweep import SweepConfig
from tunegate.core.errors import ServiceUnavailable
from tunegate.ops.processes import free_port
from tunegate.runtime.tracking import mlflow_client
from tunegate.sweep.study import open_study
from tunegate.training.budget import fixed_plan

SECRET = "s3cret-pw"


@pytest.mark.slow
def test_an_optuna_storage_that_cannot_be_opened_is_retried_then_named(tmp_path):
    storage = f"sqlite:///{tmp_path}/no-such-dir/optuna.db"
    with pytest.raises(ServiceUnavailable) as failed:
        open_study("s", storage, SweepConfig(), fixed_plan(9, [3, 9]))
    assert str(failed.value) == (f"Optuna storage {storage} unreachable after 4 tries (unable to open database file)")


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 with a SQLite store, stopped and started on the same port."""

    def __init__(self, root: Path) -> None:
        self.root, self.port, self.process = root, free_port(), None

    def start(self) -> None:
        command = [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{self.root / 'mlflow.db'}",
        ]
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 (kept open for the server's lifetime)
        self.process = subprocess.Popen(command, cwd=self.root, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError((self.root / "server.log").read_text()[-2000:])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def cli_run(home: Path, tracking: str, *extra: str, stop_server_at_trials: MlflowServer | None = None):
    environment = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),  # the session's server: no temporary one per run
        "HF_HUB_OFFLINE": "1",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",  # MLflow's own retry with backoff, shortened for the test
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    }
    summary = home.parent / f"{home.name}-{len(list(home.parent.glob('*-summary*')))}-summary.json"
    run = subprocess.Popen(
        cli_command("finetune", home, *TINY, f"registry.tracking_uri={tracking}", *extra, summary=summary),
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if stop_server_at_trials is not None:
        while run.poll() is None and not list(home.glob("trials/*/checkpoints/checkpoint-*")):
            time.sleep(0.1)
        stop_server_at_trials.stop()
    out, err = run.communicate(timeout=600)
    return run.returncode, out, err, json.loads(summary.read_text())


@pytest.mark.slow
def test_a_tracking_server_that_goes_away_is_retried_named_and_the_rerun_registers_once(tmp_path):
    server = MlflowServer(tmp_path)
    server.start()
    tracking = f"http://me:{SECRET}@127.0.0.1:{server.port}"
    home = tmp_path / "home"
    try:
        # A long outage mid-run (once the sweep has a checkpoint): one line naming the server, exit 1.
        code, out, err, failed = cli_run(home, tracking, stop_server_at_trials=server)
        assert code == 1
        expected = (
            f"MLflow tracking server http://127.0.0.1:{server.port} unreachable (connection refused, after "
            "retries); rerun when it is back: finished stages are reused"
        )
        assert err.splitlines() == [f"error: {expected}"]
        assert failed == {"status": "failed", "error": expected, "timings": {}, "cache_hits": []}

        server.start()
        code, out, err, rerun = cli_run(home, tracking)
        assert code == 0, err
        client = mlflow_client(f"http://127.0.0.1:{server.port}")
        versions = client.search_model_versions(f"name = '{rerun['registry']['model_name']}'")
        assert [(str(v.version), "promotion_reason" in v.tags) for v in versions] == [("1", True)]
        # The password given with --set went into MLFLOW_TRACKING_PASSWORD before the flow started.
        assert rerun["mlflow"]["tracking_uri"] == f"http://127.0.0.1:{server.port}"
        runs = client.search_runs([rerun["mlflow"]["experiment_id"]])
        assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
        stored = json.dumps([[r.data.params, r.data.tags] for r in runs] + [[v.tags for v in versions]])
        logs = (home / "logs" / "debug.log").read_text()
        with get_client(sync_client=True) as prefect:  # the session's server got these runs' logs and artifacts
            shown = json.dumps(
                [log.message for log in prefect.read_logs()]
                + [str(artifact.data) for artifact in prefect.read_artifacts()]
                + [flow_run.parameters for flow_run in prefect.read_flow_runs()]
            )
        assert [SECRET in text for text in (stored, logs, out, err, json.dumps(rerun), shown)] == [False] * 6
        # Nor any file the runs wrote: stage results, references, Optuna's journal, the debug log.
        assert [path for path in home.rglob("*") if path.is_file() and SECRET.encode() in path.read_bytes()] == []
    finally:
        server.stop()
