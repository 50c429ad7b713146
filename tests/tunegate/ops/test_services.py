"""`make serve` / `make stop` (`python -m tunegate.ops.services`): what is refused before anything starts, what a
failed start leaves (nothing), the MLflow server's command and the Prefect environment, and what `start` prints.
The whole start with a flow run on it: tests/deployments/test_end_to_end.py (SQLite) and test_scale_out.py
(PostgreSQL)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import psutil
import pytest

from tunegate.core.errors import InputError
from tunegate.ops.processes import HOST, Service, free_port, load, running
from tunegate.ops.services import Ports, describe, main, mlflow_command, prefect_env, start


def test_a_port_in_use_is_one_line_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        port = taken.getsockname()[1]
        with pytest.raises(InputError) as raised:
            start(tmp_path / "services", Ports(prefect=free_port(), mlflow=port))
    assert str(raised.value) == f"port {port} on 127.0.0.1 is in use; pick another (e.g. PREFECT_PORT=4300)"
    assert not (tmp_path / "services").exists()


def test_status_and_stop_with_nothing_started_say_so(tmp_path, capsys):
    state = str(tmp_path / "services")
    assert (main(["status", "--state-dir", state]), main(["stop", "--state-dir", state])) == (0, 0)
    assert capsys.readouterr().out.splitlines() == ["nothing is running", "nothing was running"]


def test_a_started_run_is_refused_a_second_start_on_the_command_line(tmp_path, capsys):
    from tunegate.ops.processes import save

    state = tmp_path / "services"
    state.mkdir()
    me = psutil.Process()
    save(state, [Service("prefect-server", me.pid, me.cmdline(), None, "log", me.create_time())])
    assert main(["start", "--state-dir", str(state)]) == 2
    assert (
        capsys.readouterr().err
        == f"error: {state / 'services.json'}: services already running; run `make stop` first\n"
    )


def test_the_prefect_environment_keeps_the_api_to_its_own_origin(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEGATE_TEST_MARKER", "kept")
    env = prefect_env(tmp_path / "services", Ports(4300, 5100), {"PREFECT_LOGGING_LEVEL": "INFO"})
    expected = {
        "PREFECT_API_URL": "http://127.0.0.1:4300/api",
        "PREFECT_HOME": str((tmp_path / "services" / "prefect-home").resolve()),
        "PREFECT_LOGGING_LEVEL": "INFO",  # extra_env wins
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS": "http://127.0.0.1:4300",
        "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "true",
        "TUNEGATE_TEST_MARKER": "kept",  # the caller's environment passes through
    }
    assert {key: env[key] for key in expected} == expected


def test_the_mlflow_server_serves_its_artifacts_on_the_loopback_only(tmp_path):
    store = tmp_path / "new" / "mlflow.db"
    command = mlflow_command(f"sqlite:///{store}", 5100, tmp_path / "artifacts")
    assert command == [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        "5100",
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{store}",
        "--serve-artifacts",
        "--artifacts-destination",
        str((tmp_path / "artifacts").resolve()),
    ]
    assert store.parent.is_dir()  # SQLite needs the directory of its file


def test_what_start_prints_names_every_service_and_the_next_commands(tmp_path):
    services = [
        Service("postgres", 1, [], "postgresql://tunegate@127.0.0.1:5433/postgres", "log", 0.0),
        Service("prefect-server", 2, [], "http://127.0.0.1:4200", "log", 0.0),
        Service("prefect-worker", 3, [], None, "log", 0.0),
        Service("mlflow-ui", 4, [], "http://127.0.0.1:5000", "log", 0.0),
    ]
    state = tmp_path / "services"
    assert describe(services, state).splitlines() == [
        "Prefect UI   http://127.0.0.1:4200",
        "MLflow UI    http://127.0.0.1:5000",
        "PostgreSQL   postgresql://tunegate@127.0.0.1:5433/postgres (databases optuna, mlflow, prefect)",
        f"  export PGPASSWORD=$(cat {state / 'postgres' / 'password'})  # unless TUNEGATE_PG_PASSWORD is set",
        "  config: sweep.storage: postgresql://tunegate@127.0.0.1:5433/optuna   registry.tracking_uri: "
        "http://127.0.0.1:5000",
        f"Worker       pool 'tunegate-local' (process), logs in {state / 'logs'}",
        "",
        "In the shell you deploy and trigger from:",
        "  export PREFECT_API_URL=http://127.0.0.1:4200/api",
        "  .venv/bin/prefect --no-prompt deploy --all",
        "  .venv/bin/prefect deployment run 'finetune/on-demand'",
        "Stop everything with `make stop`.",
    ]
    assert "PostgreSQL" not in describe(services[1:], state)


@pytest.mark.slow  # starts a real Prefect server and worker (~20 s)
def test_a_start_that_fails_midway_stops_what_it_had_started(tmp_path):
    state = tmp_path / "services"
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory", encoding="utf-8")
    # The MLflow store's directory cannot be made (a file is in its way): after the server and the worker started.
    with pytest.raises(OSError):
        start(state, Ports(free_port(), free_port()), mlflow_store=blocked / "mlflow.db")
    assert running(state) == [] and load(state) == [] and not (state / "services.json").exists()
    log_names = sorted(path.name for path in (state / "logs").iterdir())
    assert log_names == ["prefect-server.log", "prefect-worker.log"]  # both had started
    home = str((state / "prefect-home").resolve())
    assert [
        process.pid for process in psutil.process_iter() if environment_of(process).get("PREFECT_HOME") == home
    ] == []


def environment_of(process: psutil.Process) -> dict[str, str]:
    try:
        return process.environ()
    except (psutil.Error, OSError):  # ended meanwhile, or not ours to read
        return {}
