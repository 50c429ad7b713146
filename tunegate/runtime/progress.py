"""Prefect progress artifacts for the long stages: the sweep (trials finished) and the final training (steps).

Each shows in the flow run's Artifacts tab as a bar with a one-line description, updated in place, so a
run started from the UI shows how far it is without opening the logs.
"""

from __future__ import annotations

from typing import Any

from tunegate.config.search_space import describe_params, ordered_params

SWEEP_KEY, TRAINING_KEY = "sweep-progress", "training-progress"
# About 20 updates per training run: often enough to watch, few enough API calls (one each).
UPDATES_PER_RUN = 20


class ProgressArtifact:
    """One progress artifact (0-100 %) and its description, updated in place."""

    def __init__(self, key: str, done: float, total: float, description: str) -> None:
        from prefect.artifacts import create_progress_artifact

        self.artifact_id = create_progress_artifact(percent(done, total), key=key, description=description)

    def update(self, done: float, total: float, description: str) -> None:
        from prefect.artifacts import update_progress_artifact

        update_progress_artifact(self.artifact_id, percent(done, total), description=description)


def percent(done: float, total: float) -> float:
    return round(100.0 * min(done, total) / total, 1) if total else 100.0


def sweep_description(
    finished: int, total: int, pruned: int, best: tuple[float, dict[str, Any]] | None, metric: str = "val_loss"
) -> str:
    line = f"Sweep: {finished}/{total} trials finished ({pruned} pruned)"
    if best is None:
        return line
    value, params = best
    return f"{line}; best {metric} {value:.4f} at {describe_params(ordered_params(params))}"
