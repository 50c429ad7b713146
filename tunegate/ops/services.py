"""`make serve` / `make stop`: a local Prefect server, a process worker and the MLflow UI, on 127.0.0.1 only.

python -m tunegate.ops.services start [--prefect-port 4200] [--mlflow-port 5000] [--state-dir .tunegate/services]
python -m tunegate.ops.services stop | status

`start` launches the three in their own process groups, waits until each answers, creates the work pool
that prefect.yaml names, and records what it started in `<state-dir>/services.json` (pid, command line,
URL, log file). `stop` ends exactly those process groups (after checking that each pid still runs the
recorded command, so a reused pid is never touched), SIGTERM first and SIGKILL after a grace period.
The Prefect server keeps its SQLite database under `<state-dir>/prefect-home`; the MLflow UI reads the
pipeline's store (`<home>/mlflow.db`, the default for `home: .tunegate`).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from tunegate.core.errors import InputError
from tunegate.ops.postgres import PostgresCluster, postgres_binary
from tunegate.ops.processes import (
    HOST,
    STOP_GRACE_SECONDS,
    Service,
    alive,
    launch,
    load,
    require_free_port,
    running,
    save,
    signal_group,
    signal_process,
    wait_until_ready,
)

WORK_POOL = "tunegate-local"  # the pool prefect.yaml's deployments use
DEFAULT_STATE_DIR = Path(".tunegate/services")
DEFAULT_MLFLOW_STORE = Path(".tunegate/mlflow.db")
ASYNCPG, PSYCOPG = "postgresql+asyncpg", "postgresql+psycopg"  # the Prefect server's driver; MLflow's (psycopg 3)


@dataclass
class Ports:
    prefect: int = 4200
    mlflow: int = 5000
    postgres: int = 5433  # not 5432: a system PostgreSQL may hold that one


def executable(name: str) -> str:
    """A console script of this environment (prefect, mlflow), next to the running interpreter."""
    return str(Path(sys.executable).parent / name)


def prefect_env(state_dir: Path, ports: Ports, extra_env: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "PREFECT_HOME": str((state_dir / "prefect-home").resolve()),
        "PREFECT_API_URL": f"http://{HOST}:{ports.prefect}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # A page on another origin must not drive the API through the user's browser: state-changing calls need
        # Prefect's CSRF token (its client and UI fetch one), and only the server's own UI origin passes CORS.
        "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "true",
        "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS": f"http://{HOST}:{ports.prefect}",
        **extra_env,
    }


def start(
    state_dir: Path = DEFAULT_STATE_DIR,
    ports: Ports | None = None,
    mlflow_store: Path = DEFAULT_MLFLOW_STORE,
    extra_env: dict[str, str] | None = None,
    db: str = "sqlite",
) -> list[Service]:
    """Start server, pool, worker and MLflow UI (with `db="postgres"`: first a PostgreSQL cluster that holds the
    Prefect server's database and the MLflow server's store); on any failure stop what was started and raise."""
    ports = ports or Ports()
    if running(state_dir):
        raise InputError(f"{state_dir / 'services.json'}: services already running; run `make stop` first")
    for port in (ports.prefect, ports.mlflow, *((ports.postgres,) if db == "postgres" else ())):
        require_free_port(port)
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    env = prefect_env(state_dir, ports, extra_env or {})
    mlflow_env = {**os.environ, **(extra_env or {})}
    started: list[Service] = []
    try:
        if db == "postgres":
            cluster = PostgresCluster(state_dir / "postgres", ports.postgres)
            started.append(postgres_service(cluster))
            save(state_dir, started)
            # The password travels as PGPASSWORD (asyncpg and psycopg read it), never inside a URL or a file of
            # ours; the worker's flow runs inherit it for the Optuna storage.
            env |= {**cluster.client_env(), "PREFECT_SERVER_DATABASE_CONNECTION_URL": cluster.url("prefect", ASYNCPG)}
            mlflow_env |= cluster.client_env()
        server = launch(
            "prefect-server",
            [executable("prefect"), "server", "start", "--host", HOST, "--port", str(ports.prefect)],
            env,
            state_dir,
            f"http://{HOST}:{ports.prefect}",
        )
        started.append(server)
        save(state_dir, started)
        wait_until_ready(f"{server.url}/api/health", server, state_dir)
        create_work_pool(env)
        started.append(
            launch(
                "prefect-worker",
                [executable("prefect"), "worker", "start", "--pool", WORK_POOL, "--type", "process"],
                env,
                state_dir,
                None,
            )
        )
        save(state_dir, started)
        store = f"sqlite:///{mlflow_store.resolve()}" if db == "sqlite" else cluster.url("mlflow", PSYCOPG)
        mlflow_ui = launch(
            "mlflow-ui",
            mlflow_command(store, ports.mlflow, state_dir / "mlartifacts"),
            mlflow_env,
            state_dir,
            f"http://{HOST}:{ports.mlflow}",
        )
        started.append(mlflow_ui)
        save(state_dir, started)
        wait_until_ready(f"{mlflow_ui.url}/health", mlflow_ui, state_dir)
    except BaseException:
        stop(state_dir)
        raise
    return started


def mlflow_command(store: str, port: int, artifacts: Path) -> list[str]:
    """An MLflow tracking server on `store` (SQLite file or PostgreSQL) that also serves the artifacts it stores
    under `artifacts`, so clients need no access to its disk."""
    if store.startswith("sqlite:///"):
        Path(store.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return [
        executable("mlflow"),
        "server",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        store,
        "--serve-artifacts",
        "--artifacts-destination",
        str(artifacts.resolve()),
    ]


def postgres_service(cluster: PostgresCluster) -> Service:
    """Start the cluster (pg_ctl daemonizes it) and record its postmaster like a launched service."""
    import psutil

    pid = cluster.start()
    command = [postgres_binary("pg_ctl"), "-D", str(cluster.data.resolve()), "start"]
    log = str(cluster.directory / "postgres.log")
    return Service("postgres", pid, command, cluster.url("postgres"), log, psutil.Process(pid).create_time())


def create_work_pool(env: dict[str, str]) -> None:
    """The process pool prefect.yaml deploys to (an existing one is kept as it is)."""
    import subprocess

    listed = subprocess.run(
        [executable("prefect"), "work-pool", "inspect", WORK_POOL], env=env, capture_output=True, text=True
    )
    if listed.returncode == 0:
        return
    subprocess.run(
        [executable("prefect"), "work-pool", "create", WORK_POOL, "--type", "process"],
        env=env,
        check=True,
        capture_output=True,
    )


def stop(state_dir: Path = DEFAULT_STATE_DIR) -> list[str]:
    """End the recorded process groups and their descendants (flow runs the worker started); returns names."""
    import psutil

    stopped = []
    for service in reversed(load(state_dir)):
        if not alive(service):
            continue
        if service.name == "postgres":  # a clean shutdown flushes its data; signals are the fallback below
            PostgresCluster(Path(service.command[2]).parent, 0).stop()
        leader = psutil.Process(service.pid)  # before signalling: once it exits, its pid may be gone
        descendants = leader.children(recursive=True)
        signal_group(service.pid, signal.SIGTERM)
        for child in descendants:
            signal_process(child, signal.SIGTERM)
        _, left = psutil.wait_procs([leader, *descendants], timeout=STOP_GRACE_SECONDS)
        signal_group(service.pid, signal.SIGKILL)
        for process in left:
            signal_process(process, signal.SIGKILL)
        stopped.append(service.name)
    (state_dir / "services.json").unlink(missing_ok=True)
    return stopped


def describe(services: list[Service], state_dir: Path) -> str:
    by_name = {service.name: service for service in services}
    prefect, mlflow_ui = by_name["prefect-server"].url, by_name["mlflow-ui"].url
    shared_state = []
    if "postgres" in by_name:
        optuna_url = by_name["postgres"].url.rsplit("/", 1)[0] + "/optuna"
        shared_state = [
            f"PostgreSQL   {by_name['postgres'].url} (databases optuna, mlflow, prefect)",
            f"  export PGPASSWORD=$(cat {state_dir / 'postgres' / 'password'})  # unless TUNEGATE_PG_PASSWORD is set",
            f"  config: sweep.storage: {optuna_url}   registry.tracking_uri: {mlflow_ui}",
        ]
    return "\n".join(
        [
            f"Prefect UI   {prefect}",
            f"MLflow UI    {mlflow_ui}",
            *shared_state,
            f"Worker       pool '{WORK_POOL}' (process), logs in {state_dir / 'logs'}",
            "",
            "In the shell you deploy and trigger from:",
            f"  export PREFECT_API_URL={prefect}/api",
            "  .venv/bin/prefect --no-prompt deploy --all",
            "  .venv/bin/prefect deployment run 'finetune/on-demand'",
            "Stop everything with `make stop`.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--prefect-port", type=int, default=int(os.environ.get("PREFECT_PORT", 4200)))
    parser.add_argument("--mlflow-port", type=int, default=int(os.environ.get("MLFLOW_PORT", 5000)))
    parser.add_argument("--postgres-port", type=int, default=int(os.environ.get("PG_PORT", 5433)))
    parser.add_argument("--mlflow-store", type=Path, default=DEFAULT_MLFLOW_STORE)
    parser.add_argument(
        "--db",
        choices=["sqlite", "postgres"],
        default=os.environ.get("DB") or "sqlite",
        help="where the Prefect server and MLflow keep their state (postgres: a PostgreSQL cluster on 127.0.0.1)",
    )
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            ports = Ports(args.prefect_port, args.mlflow_port, args.postgres_port)
            services = start(args.state_dir, ports, args.mlflow_store, db=args.db)
            print(describe(services, args.state_dir))
        elif args.action == "stop":
            stopped = stop(args.state_dir)
            print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
        else:
            services = running(args.state_dir)
            print("\n".join(f"{s.name} pid {s.pid} {s.url or ''}" for s in services) or "nothing is running")
    except (InputError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
