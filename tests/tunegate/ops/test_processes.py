"""The services' process records: a port in use is one line; a recorded pid counts as running only while it is
still the process that was started (a pid reused by a later process is never touched)."""

from __future__ import annotations

import signal
import socket
import sys
from dataclasses import replace

import pytest

from tunegate.core.errors import InputError
from tunegate.ops.processes import alive, free_port, launch, load, require_free_port, running, save, signal_group


def test_a_port_in_use_is_one_line_naming_it():
    with socket.create_server(("127.0.0.1", free_port())) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(InputError) as refused:
            require_free_port(port)
    assert str(refused.value) == f"port {port} on 127.0.0.1 is in use; pick another (e.g. PREFECT_PORT=4300)"
    require_free_port(port)  # closed: free again


def test_a_recorded_service_runs_only_while_its_pid_is_the_process_started(tmp_path):
    (tmp_path / "logs").mkdir()
    sleeper = launch("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], {}, tmp_path, None)
    try:
        save(tmp_path, [sleeper, replace(sleeper, name="reused-pid", started_at=sleeper.started_at - 1.0)])
        assert [service.name for service in load(tmp_path)] == ["sleeper", "reused-pid"]
        assert [service.name for service in running(tmp_path)] == ["sleeper"]
    finally:
        signal_group(sleeper.pid, signal.SIGKILL)
    import psutil

    psutil.Process(sleeper.pid).wait(timeout=10)
    assert alive(sleeper) is False
