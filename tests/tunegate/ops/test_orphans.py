"""The orphan watchdog: once a run dies without its exit handlers (SIGKILL), the run's temporary API server is
stopped, and nothing else the run started is touched. Real processes: a "run" that starts a server-looking child
(its command line names uvicorn) and an ordinary one, then is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tunegate.ops.orphans import alive, server_children, watch

# make test-fast leaves it out: real processes started and killed
pytestmark = pytest.mark.slow

RUN = """
import subprocess, sys, time
sleep = [sys.executable, "-c", "import time; time.sleep(120)"]
server = subprocess.Popen(sleep + ["uvicorn", "--factory", "prefect.server.api.server:create_app"])
other = subprocess.Popen(sleep + ["worker"])
print(server.pid, other.pid, flush=True)
time.sleep(120)
"""


@pytest.fixture
def run():
    process = subprocess.Popen([sys.executable, "-c", RUN], stdout=subprocess.PIPE, text=True)
    server, other = (int(pid) for pid in process.stdout.readline().split())
    yield process, server, other
    for pid in (process.pid, server, other):
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    process.wait()


def test_a_killed_runs_server_is_stopped_and_its_other_children_are_left(run):
    process, server, other = run
    assert server_children(process.pid) == {server}
    stopped: list[list[int]] = []
    watchdog = threading.Thread(target=lambda: stopped.append(watch(process.pid)))
    watchdog.start()
    time.sleep(1.0)  # the watchdog scans for the server every 0.2 s while the run lives
    assert alive(server)
    process.kill()  # no exit handler runs
    process.wait()  # reaped here; until then it counts as gone too (a zombie is not alive)
    watchdog.join(timeout=30)
    assert stopped == [[server]]
    assert not alive(server) and alive(other)


def test_a_run_that_had_no_server_stops_nothing():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    assert watch(process.pid) == []  # returns once the run has exited (a zombie until reaped below)
    process.wait()


def test_a_zombie_is_not_alive_and_a_missing_pid_neither():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    assert not alive(process.pid)
    process.wait()
    assert not alive(process.pid)
