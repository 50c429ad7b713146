"""What a training run returns: its measurements and health, and the trained weights by reference."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tunegate.core.refs import AdapterRef
from tunegate.training.health import HealthReport


class TrainResult(BaseModel):
    """What a training run produced and measured."""

    adapter_dir: str
    method: str
    steps: int
    objective: str = Field(description="The metric the best checkpoint was chosen on (accuracy, rouge_l, val_loss).")
    best_objective: float = Field(description="That metric at the kept checkpoint (NaN if never measured).")
    best_step: int = Field(description="Step of the kept checkpoint.")
    best_val_loss: float
    val_loss_history: list[tuple[int, float]]
    objective_history: list[tuple[int, float]]
    trainable_parameters: int = Field(description="Parameters the method trains (adapter, virtual tokens, or all).")
    train_tokens_seen: int
    tokens_per_second: float
    peak_memory_mb: float
    resumed_from_step: int
    overlength_rows: int
    stopped_early: bool
    health: HealthReport


class ChosenTrial(BaseModel):
    """The sweep's best complete, healthy trial: its params, its training result and its saved weights."""

    number: int
    params: dict[str, float | int]
    result: TrainResult
    adapter: AdapterRef
    mlflow_run_id: str | None


class TrainedModel(BaseModel):
    """The candidate: a training result, its saved weights, and where it came from."""

    result: TrainResult
    adapter: AdapterRef
    source: str = Field(description="`trial <n>` (the sweep's best trial, no second training) or `refit`.")
    mlflow_run_id: str | None = Field(default=None, description="The MLflow run that trained it.")
