"""Content-addressed task caching: the key is what a stage reads, how it is configured, and its code.

Prefect's INPUTS policy would pickle pydantic references and its TASK_SOURCE policy sees only the
task function's body; a stage's behaviour also lives in the project modules it imports, in the versions of
the libraries that write its outputs and in files it reads (the GX suites). So the key here is: sha256 of
each input as JSON (references carry the content fingerprints of the files they point at) + the code
fingerprint of the task's module (`tunegate.runtime.code_version`) + of any extra files.

A stage runs bound to its pipeline home (`bound_to_home`): its result records live in `<home>/cache/results`
and its locks in `<home>/cache/locks`, so deleting home deletes the cache with the outputs it points at, and
every process using that home shares the locks. Isolation is SERIALIZABLE with `flock` locks
(`tunegate.runtime.locking`): two runs that reach the same stage with the same key at once do the work once; the
second waits and reads the first one's result. A cache hit is only used if the outputs it references are
still there and unchanged (`tunegate.runtime.stages.run_verified`).
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import Task
from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.transactions import IsolationLevel

from tunegate.core.fingerprint import combine, fingerprint_file, fingerprint_value
from tunegate.runtime.code_version import code_fingerprint
from tunegate.runtime.locking import HostLockManager, lock_directory


@dataclass
class StageContentPolicy(CachePolicy):
    """Cache key = fingerprints of the inputs (but `excluded`) + the task module's code + `extra_files`."""

    extra_files: tuple[str, ...] = field(default_factory=tuple)
    excluded: tuple[str, ...] = field(default_factory=tuple)

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        parts = [f"code={code_fingerprint(module_file(task_ctx.task.fn))}"]
        parts += [f"file:{Path(p).name}={fingerprint_file(p)}" for p in sorted(self.extra_files)]
        parts += [
            f"{name}={fingerprint_value(value)}" for name, value in sorted(inputs.items()) if name not in self.excluded
        ]
        return combine(*parts)


def module_file(fn: Any) -> str:
    """The file of the module that defines `fn`. Not `inspect.getsourcefile`: a task shipped to a Dask worker
    arrives pickled by value, and its code then reports `<dynamic-code>` as its file."""
    module = sys.modules.get(fn.__module__) or importlib.import_module(fn.__module__)
    return str(module.__file__)


def stage_cache_policy(*extra_files: str | Path, excluded: tuple[str, ...] = ()) -> StageContentPolicy:
    """Policy for a stage task; pass the files (suites, templates) whose content changes its output and
    the arguments that do not (bookkeeping such as a trial number or a tracking run id)."""
    return StageContentPolicy(extra_files=tuple(str(p) for p in extra_files), excluded=excluded)


def result_directory(home: str | Path) -> Path:
    """Where a home's cache records (Prefect results) live; its locks are next to them."""
    return Path(home) / "cache" / "results"


def bound_to_home(stage: Task, home: str | Path) -> Task:
    """The stage with its result store and its SERIALIZABLE locks under `home`."""
    policy = dataclasses.replace(
        stage.cache_policy,
        isolation_level=IsolationLevel.SERIALIZABLE,
        lock_manager=HostLockManager(lock_directory(home)),
    )
    return stage.with_options(result_storage=result_directory(home), cache_policy=policy)
