"""Content-addressed task caching: the key is what a stage reads, how it is configured, and its code.

Prefect's INPUTS policy would pickle pydantic references and its TASK_SOURCE policy sees only the
task function's body; a stage's behaviour also lives in its module's helpers and in files it reads
(the GX suites). So the key here is: sha256 of each input as JSON (references carry the content
fingerprints of the files they point at) + sha256 of the task's module file + of any extra files.

Isolation is SERIALIZABLE with host-wide `flock` locks (`tunegate.locking`): two runs that reach the same
stage with the same key at once do the work once; the second waits and reads the first one's result.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.transactions import IsolationLevel

from tunegate.fingerprint import combine, fingerprint_file, fingerprint_value
from tunegate.locking import HOST_LOCKS


@dataclass
class StageContentPolicy(CachePolicy):
    """Cache key = fingerprints of the inputs (but `excluded`) + the task module's source + `extra_files`."""

    extra_files: tuple[str, ...] = field(default_factory=tuple)
    excluded: tuple[str, ...] = field(default_factory=tuple)

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        module_file = inspect.getsourcefile(task_ctx.task.fn)
        parts = [f"module={fingerprint_file(module_file)}"]
        parts += [f"file:{Path(p).name}={fingerprint_file(p)}" for p in sorted(self.extra_files)]
        parts += [
            f"{name}={fingerprint_value(value)}" for name, value in sorted(inputs.items()) if name not in self.excluded
        ]
        return combine(*parts)


def stage_cache_policy(*extra_files: str | Path, excluded: tuple[str, ...] = ()) -> StageContentPolicy:
    """Policy for a stage task; pass the files (suites, templates) whose content changes its output and
    the arguments that do not (bookkeeping such as a trial number or a tracking run id)."""
    return StageContentPolicy(
        extra_files=tuple(str(p) for p in extra_files),
        excluded=excluded,
        isolation_level=IsolationLevel.SERIALIZABLE,
        lock_manager=HOST_LOCKS,
    )
