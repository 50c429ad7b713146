"""Training budgets in optimizer steps, derived from epochs, and the sweep's rungs as fractions of that budget.

A config says "2 epochs", not "150 steps", so it carries between a 3k-row and a 30k-row dataset. The rungs
are where a trial reports its objective to the pruner: budget / rf^k for k = rungs..1, then the full budget,
so the top rung is the budget the model ships with.

    >>> final_budget_steps(epochs=2.0, max_steps=None, train_rows=2880, rows_per_step=16)
    360
    >>> rung_steps(360, rungs=2, reduction_factor=3)
    [40, 120, 360]
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field

from tunegate.config.pipeline import PipelineConfig
from tunegate.config.train import TrainConfig
from tunegate.evaluation.scoring import task_metric_name


def final_budget_steps(epochs: float, max_steps: int | None, train_rows: int, rows_per_step: int) -> int:
    """ceil(epochs x steps per epoch), capped by `max_steps`. Rows are the train table's (rows left out for
    length are few, and the Trainer cycles the data, so the count need not be exact)."""
    steps = max(1, math.ceil(epochs * math.ceil(max(train_rows, 1) / rows_per_step)))
    return min(steps, max_steps) if max_steps else steps


def first_rung_steps(budget: int, rungs: int, reduction_factor: int) -> int:
    """The pruner's min_resource: rung k sits at this x rf^k (Optuna's successive halving), the top at `budget`."""
    return max(1, math.ceil(budget / reduction_factor**rungs))


def rung_steps(budget: int, rungs: int, reduction_factor: int) -> list[int]:
    """Steps at which the objective is reported: the lower rungs, then the full budget."""
    first = first_rung_steps(budget, rungs, reduction_factor)
    lower = {first * reduction_factor**k for k in range(rungs)}
    return sorted(step for step in lower if step < budget) + [budget]


def evaluation_steps(rungs: list[int], budget: int, every: int | None) -> list[int]:
    """Rung steps, plus every `every` steps when extra evaluations are asked for."""
    extra = set(range(every, budget + 1, every)) if every else set()
    return sorted(set(rungs) | extra | {budget})


class TrainingPlan(BaseModel):
    """How one training run is budgeted, evaluated and judged: the same plan for a trial and for a refit."""

    max_steps: int = Field(description="Optimizer steps of the run (the shipped budget, or the opt-in proxy).")
    evaluation_steps: list[int] = Field(description="Steps at which val loss and the objective are measured.")
    first_rung: int = Field(description="Step by which the training loss must have fallen (health check).")
    objective: Literal["task_metric", "val_loss"] = Field(description="What the best checkpoint is chosen on.")
    metric: str = Field(description="The objective's metric name: accuracy, rouge_l or val_loss.")
    objective_rows: int = Field(description="Validation rows the task metric is measured on.")
    labels: list[str] | None = Field(description="The task's label set (task metric: accuracy), or None.")
    label_scoring: Literal["generation", "likelihood"] = Field(
        default="generation", description="Labelled tasks: accuracy of greedy answers, or of the likeliest label."
    )
    keep_best_checkpoint: bool = Field(default=True, description="False: the last checkpoint is the result.")

    @property
    def greater_is_better(self) -> bool:
        return self.objective == "task_metric"


def trial_plan(config: PipelineConfig, train_rows: int) -> TrainingPlan:
    """A trial's plan: the final budget (or, opted in, the proxy's `sweep.trial_max_steps`), best checkpoint kept."""
    budget = config.sweep.trial_max_steps or final_budget(config.train, train_rows)
    return _plan(config, budget, keep_best_checkpoint=True)


def final_plan(config: PipelineConfig, train_rows: int, val_rows: int) -> TrainingPlan:
    """The candidate's plan. Without refit it equals the trial plan (the best trial is the candidate); a refit on
    train + val has more rows, so more steps, and keeps its last checkpoint (val is no longer held out)."""
    with_val = config.sweep.final == "refit" and config.sweep.refit_with_val
    processes = config.train.processes if config.sweep.final == "refit" else 1
    budget = final_budget(config.train, train_rows + (val_rows if with_val else 0), processes)
    return _plan(config, budget, keep_best_checkpoint=not with_val)


def final_budget(train: TrainConfig, rows: int, processes: int = 1) -> int:
    """Steps for `train.epochs` over `rows` at the global batch (`processes` each take batch_size rows a step)."""
    rows_per_step = train.batch_size * train.gradient_accumulation_steps * processes
    return final_budget_steps(train.epochs, train.max_steps, rows, rows_per_step)


def _plan(config: PipelineConfig, budget: int, keep_best_checkpoint: bool) -> TrainingPlan:
    rungs = rung_steps(budget, config.sweep.rungs, config.sweep.reduction_factor)
    objective = config.objective()
    return TrainingPlan(
        max_steps=budget,
        evaluation_steps=evaluation_steps(rungs, budget, config.train.eval_steps),
        first_rung=rungs[0],
        objective=objective,
        metric=task_metric_name(config.task.labels) if objective == "task_metric" else "val_loss",
        objective_rows=config.sweep.objective_rows,
        labels=config.task.labels,
        label_scoring=config.task.label_scoring,
        keep_best_checkpoint=keep_best_checkpoint,
    )


def fixed_plan(
    max_steps: int,
    evaluation_steps: list[int] | None = None,
    labels: list[str] | None = None,
    objective: Literal["task_metric", "val_loss"] = "val_loss",
    objective_rows: int = 200,
) -> TrainingPlan:
    """A plan of `max_steps` evaluated at `evaluation_steps` (default: the last step), for direct callers of
    `run_training` (benchmarks, tests) that have no pipeline config."""
    steps = sorted(set(evaluation_steps or []) | {max_steps})
    return TrainingPlan(
        max_steps=max_steps,
        evaluation_steps=steps,
        first_rung=steps[0],
        objective=objective,
        metric=task_metric_name(labels) if objective == "task_metric" else "val_loss",
        objective_rows=objective_rows,
        labels=labels,
    )
