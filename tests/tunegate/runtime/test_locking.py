"""Host locks: one run does a stage's work, a concurrent identical run waits and reads its result."""

import os
import subprocess
import sys
import time

import pytest
from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner

from tests.conftest import REPO
from tunegate.runtime.caching import bound_to_home, stage_cache_policy
from tunegate.runtime.locking import HostLockManager, lock_directory

# make test-fast leaves it out: real processes hold locks and are killed
pytestmark = pytest.mark.slow


@task(cache_policy=stage_cache_policy())
def slow_stage(log_path: str, value: int) -> int:
    with open(log_path, "a") as log:
        log.write(f"ran {value}\n")
    time.sleep(1.5)  # long enough for the twin to arrive while this one holds the lock
    return value * 2


@flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
def twin_stages(log_path: str, home: str) -> list[tuple[str, int]]:
    stage = bound_to_home(slow_stage, home)
    futures = [stage.submit(log_path, 21), stage.submit(log_path, 21)]
    results = [future.result() for future in futures]
    return [(future.state.name, result) for future, result in zip(futures, results, strict=True)]


def test_two_identical_stage_runs_at_once_do_the_work_once(tmp_path):
    log_path = tmp_path / "log.txt"
    outcomes = twin_stages(str(log_path), str(tmp_path / "home"))
    assert sorted(outcomes) == [("Cached", 42), ("Completed", 42)]
    assert log_path.read_text() == "ran 21\n"
    assert sorted(p.name for p in (tmp_path / "home" / "cache").iterdir()) == ["locks", "results"]


HOLD_AND_WAIT = """
import sys, time
from tunegate.runtime.locking import HostLockManager
HostLockManager(sys.argv[1]).acquire_lock("stage-key", "child")
print("held", flush=True)
time.sleep(600)
"""


def test_a_killed_holder_leaves_no_lock_behind(tmp_path):
    directory = lock_directory(tmp_path)
    locks = HostLockManager(directory)
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_WAIT, str(directory)],
        cwd=REPO,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline() == "held\n"
        assert locks.is_locked("stage-key")
        assert locks.acquire_lock("stage-key", "parent", acquire_timeout=0.5) is False
    finally:
        child.kill()
        child.wait()
    assert locks.acquire_lock("stage-key", "parent", acquire_timeout=5) is True
    locks.release_lock("stage-key", "parent")
    assert not locks.is_locked("stage-key")
    assert (tmp_path / "cache" / "locks" / "stage-key.lock").exists()  # the file stays; the lock does not
