"""Locks that keep concurrent pipeline runs from doing the same work twice or racing on shared state.

`HostLockManager` is a Prefect `LockManager` built on OS file locks (`flock`). The stage tasks' cache
policies use it with SERIALIZABLE isolation, so when two runs reach the same stage with the same cache
key at once (a cron retrain while a manual run is going), the second waits for the first and then reads
its cached result instead of writing the same files under `<home>` at the same time. Prefect's own
`FileSystemLockManager` marks a lock by a file's existence, which outlives a killed process and would
block every later run; the kernel drops an `flock` when its holder dies, so a killed run leaves no lock.

The lock files live under `<home>/cache/locks`, next to the result store whose records they guard, so every
process that uses the same home (the `make serve` worker, a CLI run, a test) shares one set of locks, whatever
its PREFECT_HOME, and deleting home deletes them with the cache.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect.locking.protocol import LockManager

# Waiting holders poll every 0.2 s: a stage takes seconds to hours, so the wake-up delay does not matter.
POLL_SECONDS = 0.2


def lock_directory(home: str | Path) -> Path:
    """Where the locks of a pipeline home live (next to its result store, `<home>/cache/results`)."""
    return Path(home) / "cache" / "locks"


class HostLockManager(LockManager):
    """Exclusive `flock` locks by key in `directory`, for threads and processes on one host; released when a
    holder dies."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._held: dict[str, tuple[int, str]] = {}
        self._guard = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:  # held file descriptors do not travel to another process
        return {"directory": str(self.directory)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["directory"])

    def lock_path(self, key: str) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        return self.directory / f"{key}.lock"

    def acquire_lock(
        self, key: str, holder: str, acquire_timeout: float | None = None, hold_timeout: float | None = None
    ) -> bool:
        """Block until the lock is ours (or `acquire_timeout` passes: False). `hold_timeout` is not needed:
        the lock lasts as long as its holder."""
        if self.is_lock_holder(key, holder):
            return True
        descriptor = os.open(self.lock_path(key), os.O_RDWR | os.O_CREAT, 0o644)
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        while not try_flock(descriptor):
            if deadline is not None and time.monotonic() > deadline:
                os.close(descriptor)
                return False
            time.sleep(POLL_SECONDS)
        with self._guard:
            self._held[key] = (descriptor, holder)
        return True

    async def aacquire_lock(
        self, key: str, holder: str, acquire_timeout: float | None = None, hold_timeout: float | None = None
    ) -> bool:
        return await asyncio.to_thread(self.acquire_lock, key, holder, acquire_timeout, hold_timeout)

    def release_lock(self, key: str, holder: str) -> None:
        with self._guard:
            descriptor, owner = self._held.get(key, (-1, ""))
            if owner != holder:
                raise ValueError(f"No lock held by {holder} for key {key}")
            del self._held[key]
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)

    def is_locked(self, key: str) -> bool:
        with self._guard:
            if key in self._held:
                return True
        path = self.lock_path(key)
        if not path.exists():
            return False
        descriptor = os.open(path, os.O_RDWR)
        try:
            free = try_flock(descriptor)
            if free:
                fcntl.flock(descriptor, fcntl.LOCK_UN)
            return not free
        finally:
            os.close(descriptor)

    def is_lock_holder(self, key: str, holder: str) -> bool:
        with self._guard:
            return self._held.get(key, (-1, ""))[1] == holder

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_locked(key):
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:
        return await asyncio.to_thread(self.wait_for_lock, key, timeout)


def try_flock(descriptor: int) -> bool:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def host_lock(key: str, home: str | Path) -> Iterator[None]:
    """Hold `home`'s lock `key` for the block (for shared state under home that is not a cached result)."""
    locks = HostLockManager(lock_directory(home))
    holder = f"{os.getpid()}-{threading.get_ident()}"
    locks.acquire_lock(key, holder)
    try:
        yield
    finally:
        locks.release_lock(key, holder)
