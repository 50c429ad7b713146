"""The process groups `make serve` starts, and only those: launched in their own groups on 127.0.0.1, waited for
until they answer, recorded with pid and start time (`services.json`), and ended SIGTERM-then-SIGKILL after
checking that each recorded pid still runs the recorded process (a reused pid is never touched)."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from tunegate.core.errors import InputError

HOST = "127.0.0.1"  # never 0.0.0.0: neither server has authentication


# A cold Prefect server (database migrations) takes ~15 s on 2 cores; MLflow's first start ~10 s.
READY_TIMEOUT_SECONDS = 120.0


# What SIGTERM gets before SIGKILL: the server and worker shut down in 1-3 s.
STOP_GRACE_SECONDS = 15.0


@dataclass
class Service:
    """One started process group."""

    name: str
    pid: int
    command: list[str]
    url: str | None
    log: str
    started_at: float  # the process's creation time: with the pid, it identifies this process and no later one


def launch(name: str, command: list[str], env: dict[str, str], state_dir: Path, url: str | None) -> Service:
    import subprocess

    log = state_dir / "logs" / f"{name}.log"
    with open(log, "ab") as output:
        process = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    import psutil

    started_at = psutil.Process(process.pid).create_time()
    return Service(name=name, pid=process.pid, command=command, url=url, log=str(log), started_at=started_at)


def wait_until_ready(health_url: str, service: Service, state_dir: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if not alive(service):
            raise RuntimeError(f"{service.name} exited during start-up; see {service.log}")
        try:
            with urllib.request.urlopen(health_url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(
        f"{service.name} did not answer {health_url} in {READY_TIMEOUT_SECONDS:.0f} s; see {service.log}"
    )


def require_free_port(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            raise InputError(f"port {port} on {HOST} is in use; pick another (e.g. PREFECT_PORT=4300)") from None


def free_port() -> int:
    """A port the OS says is free on the loopback interface now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def save(state_dir: Path, services: list[Service]) -> None:
    (state_dir / "services.json").write_text(json.dumps([asdict(s) for s in services], indent=2), encoding="utf-8")


def load(state_dir: Path) -> list[Service]:
    path = state_dir / "services.json"
    if not path.exists():
        return []
    return [Service(**entry) for entry in json.loads(path.read_text(encoding="utf-8"))]


def alive(service: Service) -> bool:
    """The pid runs and is still the process we started (not a later one that reused the pid)."""
    import psutil

    try:
        process = psutil.Process(service.pid)
        return process.status() != psutil.STATUS_ZOMBIE and process.create_time() == service.started_at
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def running(state_dir: Path) -> list[Service]:
    return [service for service in load(state_dir) if alive(service)]


def signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)  # started with start_new_session: the group id is the pid
    except (ProcessLookupError, PermissionError):
        pass


def signal_process(process: object, signum: int) -> None:
    import psutil

    try:
        process.send_signal(signum)
    except psutil.NoSuchProcess:
        pass
