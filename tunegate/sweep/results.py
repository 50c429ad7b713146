"""What the sweep returns: the study by reference and the trial it chose."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tunegate.config.sweep import SweepConfig
from tunegate.training.results import ChosenTrial


class StudyRef(BaseModel):
    """An Optuna study a trial task reattaches to: its name, its storage URL and the search it was opened with."""

    name: str
    storage: str = Field(description="`journal:<path>` or a database URL (may hold a password: shown redacted).")
    sweep: SweepConfig


class SweepResult(BaseModel):
    """The study after this run's trials, and the trial it chose."""

    study_name: str
    storage: str
    objective: str
    direction: str
    n_trials: int
    n_pruned: int
    best_params: dict[str, float | int]
    best_value: float
    trial_steps_total: int
    chosen: ChosenTrial
    trials_run: int = 0  # trial tasks this run executed (not served from cache)
    stopped_by_timeout: bool = False

    @property
    def served_from_cache(self) -> bool:
        """Every trial this run needed was already in the study or the cache."""
        return self.trials_run == 0
