"""What one training run is (`TrainingJob`: rows by reference, base, recipe, plan, home) and how it runs: SFT
(`sft.py`) or DPO (`dpo.py`) in this process, or as several processes under torchrun (`distributed.py`).

A run writes `<out_dir>/checkpoints/checkpoint-<step>/` every `save_steps` (a run killed mid-training and started
again resumes from the last intact one) and `<out_dir>/adapter/` (the adapter or full weights, the tokenizer and
`prompt_format.json`). Built on transformers' Trainer: dynamic padding to the longest sequence of a batch,
length-grouped batches, loss on target tokens only, gradient accumulation, cosine schedule with warm-up, clipping,
weight decay, bf16/fp16 where the hardware has it, and an optional gradient-checkpointing switch. The stages that
train (`tasks/sweep.py`'s trials, `tasks/train.py`'s candidate) call `TrainingJob.run`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel

from tunegate.config.pipeline import PipelineConfig
from tunegate.config.search_space import typed_params
from tunegate.config.train import ModelConfig, TrainConfig
from tunegate.core.fingerprint import fingerprint_value
from tunegate.core.refs import TableRef
from tunegate.data.results import SplitResult
from tunegate.runtime.stages import stage_directory
from tunegate.training.budget import TrainingPlan, final_plan, trial_plan
from tunegate.training.dpo import run_dpo_training
from tunegate.training.inputs import TrainingInputs
from tunegate.training.results import TrainResult
from tunegate.training.sft import run_sft_training

if TYPE_CHECKING:
    from tunegate.training.callbacks import EvaluationHook


class TrainingJob(BaseModel):
    """What one training run reads: the rows (by reference), the base model, the recipe, the budget, and the home
    its directory goes under. The sweep's trials share one job (each with its own params); the candidate has its
    own (a refit's budget can differ)."""

    train: TableRef
    val: TableRef
    model: ModelConfig
    recipe: TrainConfig
    plan: TrainingPlan
    home: str

    @classmethod
    def for_trials(cls, config: PipelineConfig, split: SplitResult) -> TrainingJob:
        """Trials train in one process each (`train.processes` is the refit's)."""
        job = cls.of(config, split, trial_plan(config, split.train.rows))
        one_process = job.recipe.model_copy(update={"processes": 1, "sharding": "ddp"})
        return job.model_copy(update={"recipe": one_process})

    @classmethod
    def for_candidate(cls, config: PipelineConfig, split: SplitResult) -> TrainingJob:
        return cls.of(config, split, final_plan(config, split.train.rows, split.val.rows))

    @classmethod
    def of(cls, config: PipelineConfig, split: SplitResult, plan: TrainingPlan) -> TrainingJob:
        return cls(
            train=split.train,
            val=split.val,
            model=config.model,
            recipe=config.train,
            plan=plan,
            home=str(config.home_path()),
        )

    def with_params(self, params: dict[str, float | int]) -> TrainingJob:
        """The same job with searched params (LoRA rank, learning rate) set on the recipe."""
        return self.model_copy(update={"recipe": self.recipe.model_copy(update=typed_params(params))})

    def directory(self, kind: str, module_file: str, *extra_fingerprints: str) -> Path:
        """The run's directory under home, keyed on the code, `extra_fingerprints`, the rows, the model, the recipe
        and the plan (`stage_directory`)."""
        recipe = fingerprint_value([self.model, self.recipe, self.plan])
        rows = (self.train.fingerprint, self.val.fingerprint)
        return stage_directory(self.home, kind, module_file, *extra_fingerprints, *rows, recipe)

    def run(
        self,
        out_dir: Path,
        on_evaluate: EvaluationHook | None = None,
        callbacks: list[Any] | None = None,
        train_on_val_too: bool = False,
    ) -> TrainResult:
        """Train this job into `out_dir` (`run_training`); `train_on_val_too` trains on train + val (a refit that
        no longer holds val out; val is still what it reports on)."""
        train_rows, val_rows = self.train.read(), self.val.read()
        if train_on_val_too:
            train_rows = pd.concat([train_rows, val_rows], ignore_index=True)
        return run_training(train_rows, val_rows, self.model, self.recipe, self.plan, out_dir, on_evaluate, callbacks)


def run_training(
    train_rows: pd.DataFrame,
    val_rows: pd.DataFrame,
    model_config: ModelConfig,
    train_config: TrainConfig,
    plan: TrainingPlan,
    out_dir: Path,
    on_evaluate: EvaluationHook | None = None,
    callbacks: list[Any] | None = None,
) -> TrainResult:
    """Train from the base model (or the last checkpoint in out_dir) on `plan`; keep the best checkpoint by the
    plan's objective (or the last one) and save it."""
    inputs = TrainingInputs(
        train_rows, val_rows, model_config, train_config, plan, out_dir, on_evaluate, list(callbacks or [])
    )
    return run_dpo_training(inputs) if train_config.objective == "dpo" else run_sft_training(inputs)


def run_summary_metrics(result: TrainResult) -> dict[str, float]:
    """The end-of-run numbers every training run logs, with the same names in trials and refits."""
    return {
        "tokens_per_second": result.tokens_per_second,
        "peak_memory_mb": result.peak_memory_mb,
        "best_val_loss": result.best_val_loss,
        f"best_{result.objective}": result.best_objective,
        "overlength_rows": float(result.overlength_rows),
        "healthy": float(result.health.healthy),
        "grad_spikes": float(result.health.grad_spikes),
    }
