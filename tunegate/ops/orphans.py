"""No process outlives a killed CLI run. Prefect starts a temporary API server (uvicorn) as a child process and
stops it at exit, but a run killed with SIGKILL or by a timeout never reaches its exit handlers and the server
kept running. The CLI starts this watchdog, in its own session, before the server: it notes the run's server
children while the run lives and, once the run is gone, stops any that are still up, then exits.

python -m tunegate.ops.orphans <run pid>
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# Scans for the server 5 times a second until it appears (it takes seconds to come up), then only checks that
# the run lives, once a second (a scan of /proc costs a few ms; a run lasts hours): a dead run's server is stopped
# within ~1 s (+5 s if it ignores SIGTERM).
SCAN_SECONDS, WATCH_SECONDS, STOP_GRACE_SECONDS = 0.2, 1.0, 5.0
SERVER_MARK = b"uvicorn"


def start_guarded_temporary_server() -> None:
    """Without PREFECT_API_URL: the watchdog, then Prefect's temporary server (the flow reuses it)."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return
    subprocess.Popen(
        [sys.executable, "-m", "tunegate.ops.orphans", str(os.getpid())],
        start_new_session=True,  # a signal to the run's process group does not reach the watchdog
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    SubprocessASGIServer().start()


def process_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state, parent pid, ...), None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    fields = process_fields(pid)
    return fields is not None and fields[0] != "Z"


def server_children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = process_fields(int(entry.name))
        if fields is None or fields[1] != str(pid):
            continue
        try:
            if SERVER_MARK in (entry / "cmdline").read_bytes():
                found.add(int(entry.name))
        except OSError:
            continue
    return found


def watch(run_pid: int) -> list[int]:
    """Note the run's servers until the run ends; stop those still up (SIGTERM, then SIGKILL); return them."""
    servers: set[int] = set()
    while alive(run_pid):
        if not servers:
            servers = server_children(run_pid)
        time.sleep(WATCH_SECONDS if servers else SCAN_SECONDS)
    left = [pid for pid in sorted(servers) if alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while any(alive(pid) for pid in left) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    return left


if __name__ == "__main__":
    watch(int(sys.argv[1]))
