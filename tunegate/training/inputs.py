"""What one training run reads, as one value: its rows, the base and the recipe, the step plan, where it writes,
and the hooks the caller watches it with. SFT (`sft.py`) and DPO (`dpo.py`) take it; `job.run_training` builds it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tunegate.config.train import ModelConfig, TrainConfig
from tunegate.training.budget import TrainingPlan

if TYPE_CHECKING:
    from tunegate.training.callbacks import EvaluationHook


@dataclass(frozen=True)
class TrainingInputs:
    """One training run's inputs (rows in memory: a run reads its tables once, in the process that trains)."""

    train_rows: pd.DataFrame
    val_rows: pd.DataFrame
    model: ModelConfig
    recipe: TrainConfig
    plan: TrainingPlan
    out_dir: Path
    on_evaluate: EvaluationHook | None = None
    callbacks: list[Any] = field(default_factory=list)
