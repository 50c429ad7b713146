"""Fault class 4: services down. An MLflow tracking server that goes away briefly is retried (MLflow's client
backs off); one that stays away fails the run with one line naming it, mid-sweep or mid-registration, and the
rerun once it is back adds exactly one model version, with its alias and reason. An Optuna storage that cannot be
opened is retried, then named in one line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
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


HTTP_METHODS = {b"GET", b"POST", b"PATCH", b"PUT", b"DELETE"}


class OutageRelay:
    """A TCP relay on 127.0.0.1 in front of the MLflow server; the run's tracking URI names the relay. `cut()`
    closes its listening socket and every relayed connection: the run sees connection refused, as from a server
    that went away. `cut_after(request)`: the request whose first bytes start with `request` is answered, and the
    run's next request finds the relay cut, so an outage lands at an exact point of the run's calls."""

    def __init__(self, server_port: int) -> None:
        self.port, self.server_port = free_port(), server_port
        self.listener: socket.socket | None = None
        self.sockets: list[socket.socket] = []
        self.cut_marker: bytes | None = None
        self.marked_request_seen = False

    def start(self) -> None:
        self.cut_marker, self.marked_request_seen = None, False
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def cut_after(self, request: bytes) -> None:
        self.cut_marker = request

    def cut(self) -> None:
        if self.listener is not None:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone would not
            self.listener.close()
            self.listener = None
        for relayed in self.sockets:
            try:
                relayed.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            relayed.close()
        self.sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.server_port))
            self.sockets += [client, server]
            threading.Thread(target=self._relay, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._relay, args=(server, client, False), daemon=True).start()

    def _relay(self, source: socket.socket, sink: socket.socket, from_run: bool) -> None:
        try:
            self._copy(source, sink, from_run)
        finally:  # one side closed (the server ends idle keep-alive connections after 5 s): so does the other
            for relayed in (source, sink):
                try:
                    relayed.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _copy(self, source: socket.socket, sink: socket.socket, from_run: bool) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            if from_run and self.cut_marker is not None and data.split(b" ", 1)[0] in HTTP_METHODS:
                if self.marked_request_seen:  # the marked request was answered: the next one finds the server gone
                    self.cut()
                    return
                self.marked_request_seen = data.startswith(self.cut_marker)
            try:
                sink.sendall(data)
            except OSError:
                return


def cli_run(home: Path, tracking: str, *extra: str, cut_at_trials: OutageRelay | None = None):
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
    if cut_at_trials is not None:
        while run.poll() is None and not list(home.glob("trials/*/checkpoints/checkpoint-*")):
            time.sleep(0.1)
        cut_at_trials.cut()
    out, err = run.communicate(timeout=600)
    return run.returncode, out, err, json.loads(summary.read_text())


def versions_with_reason_and_aliases(client, name: str) -> list[tuple[str, bool, list[str]]]:
    """(version, has a promotion reason, aliases) of each version; aliases read per version (searches omit them)."""
    versions = sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))
    return [
        (str(v.version), "promotion_reason" in v.tags, client.get_model_version(name, str(v.version)).aliases)
        for v in versions
    ]


@pytest.mark.slow
def test_a_tracking_server_that_goes_away_is_retried_named_and_the_rerun_registers_once(tmp_path):
    server = MlflowServer(tmp_path)
    server.start()
    relay = OutageRelay(server.port)
    relay.start()
    tracking = f"http://me:{SECRET}@127.0.0.1:{relay.port}"
    home = tmp_path / "home"
    expected = (
        f"MLflow tracking server http://127.0.0.1:{relay.port} unreachable (connection refused, after retries); "
        "rerun when it is back: finished stages are reused"
    )
    try:
        # A long outage mid-run (once the sweep has a checkpoint): one line naming the server, exit 1.
        code, out, err, failed = cli_run(home, tracking, cut_at_trials=relay)
        assert code == 1
        assert err.splitlines() == [f"error: {expected}"]
        assert failed == {"status": "failed", "error": expected, "timings": {}, "cache_hits": []}

        # Back, then gone again the moment the model version exists (mid-registration): the same line, and the
        # version is there, tagged with what it is, undecided.
        relay.start()
        relay.cut_after(b"POST /api/2.0/mlflow/model-versions/create ")
        code, out, err, failed = cli_run(home, tracking)
        assert (code, err.splitlines(), failed["status"]) == (1, [f"error: {expected}"], "failed")
        client = mlflow_client(f"http://127.0.0.1:{server.port}")
        assert versions_with_reason_and_aliases(client, "support-demo") == [("1", False, [])]

        relay.start()
        code, out, err, rerun = cli_run(home, tracking)
        assert code == 0, err
        # The rerun finished that version (its alias and reason) instead of adding a second one.
        assert versions_with_reason_and_aliases(client, rerun["registry"]["model_name"]) == [("1", True, ["champion"])]
        versions = client.search_model_versions(f"name = '{rerun['registry']['model_name']}'")
        # The password given with --set went into MLFLOW_TRACKING_PASSWORD before the flow started.
        assert rerun["mlflow"]["tracking_uri"] == f"http://127.0.0.1:{relay.port}"
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
        relay.cut()
        server.stop()
