"""Running a stage task from a flow: bound to the pipeline home, with its cache hit verified, its wall time and
whether the cache served it recorded."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from prefect import Task
from prefect.states import State

from tunegate.core.fingerprint import combine
from tunegate.core.refs import output_problems
from tunegate.runtime.caching import bound_to_home
from tunegate.runtime.code_version import code_fingerprint

log = logging.getLogger("tunegate")
T = TypeVar("T")


@dataclass
class StageLog:
    """Per-stage timings (seconds) and the names of stages served from cache, in run order."""

    home: str
    timings: dict[str, float] = field(default_factory=dict)
    cache_hits: list[str] = field(default_factory=list)

    def call(self, name: str, stage: Callable[..., T], /, **kwargs: Any) -> T:
        """Call a stage that is not one task (the sweep: many trial tasks) and record it; it counts as served
        from cache when its result says so (`served_from_cache`)."""
        started = time.perf_counter()
        result = stage(**kwargs)
        self.timings[name] = round(time.perf_counter() - started, 3)
        if getattr(result, "served_from_cache", False):
            self.cache_hits.append(name)
        return result

    def run(self, name: str, stage: Task, /, *args: Any, **kwargs: Any) -> Any:
        """Call `stage` (blocking), record it, and return its result; a failed stage raises its error."""
        started = time.perf_counter()
        state = run_verified(name, stage, self.home, *args, **kwargs)
        self.timings[name] = round(time.perf_counter() - started, 3)
        if state.name == "Cached":
            self.cache_hits.append(name)
        return state.result()


def run_verified(name: str, stage: Task, home: str, /, *args: Any, **kwargs: Any) -> State:
    """Run the stage bound to `home`; a cache hit whose outputs are missing or changed runs it again."""
    bound = bound_to_home(stage, home)
    return verified(name, bound(*args, return_state=True, **kwargs), bound, *args, **kwargs)


def verified(name: str, state: State, bound: Task, /, *args: Any, **kwargs: Any) -> State:
    """`state`, or, when it is a cache hit whose referenced outputs are gone or changed, the state of running
    the bound stage again with the cache refreshed (the log says why)."""
    if state.name != "Cached":
        return state
    problems = output_problems(state.result())
    if not problems:
        return state
    run_logger().warning(
        "%s: cached result not used, its outputs are not intact (%s); running it again", name, problems[0]
    )
    return bound.with_options(refresh_cache=True)(*args, return_state=True, **kwargs)


def run_logger() -> Any:
    """The Prefect run's logger (its lines show in the UI and the debug log), or ours outside a run."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return log


def stage_directory(home: str | Path, kind: str, module_file: str, *input_fingerprints: str) -> Path:
    """`<home>/<kind>-<key>`, the key from the stage's code fingerprint and its inputs: other inputs or other code
    (a changed helper module, another torch) never share a directory, so a checkpoint written by other code is
    never resumed."""
    return Path(home) / f"{kind}-{combine(code_fingerprint(module_file), *input_fingerprints)[:16]}"
