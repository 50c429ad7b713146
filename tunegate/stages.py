"""Running a stage task from a flow while recording its wall time and whether the cache served it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from prefect import Task


@dataclass
class StageLog:
    """Per-stage timings (seconds) and the names of stages served from cache, in run order."""

    timings: dict[str, float] = field(default_factory=dict)
    cache_hits: list[str] = field(default_factory=list)

    def record(self, name: str, seconds: float, cached: bool) -> None:
        """Record a stage that is not a single task (the sweep: many trial tasks)."""
        self.timings[name] = round(seconds, 3)
        if cached:
            self.cache_hits.append(name)

    def run(self, name: str, stage: Task, *args: Any, **kwargs: Any) -> Any:
        """Call `stage` (blocking), record it, and return its result; a failed stage raises its error."""
        started = time.perf_counter()
        state = stage(*args, return_state=True, **kwargs)
        self.timings[name] = round(time.perf_counter() - started, 3)
        if state.name == "Cached":
            self.cache_hits.append(name)
        return state.result()
