"""The Trainer callbacks of a training run: evaluation history, throughput, MLflow metrics, Prefect progress.

They live apart from the stage modules so that importing a flow does not import transformers (and with it
torch and PEFT, ~6 s): a run whose stages are all cached never needs them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback

from tunegate.progress import TRAINING_KEY, UPDATES_PER_RUN, ProgressArtifact

EvaluationHook = Callable[[int, float], None]  # called with (step, val_loss) after each evaluation
# Trainer log keys → the names every run uses.
TRAINER_METRIC_NAMES = {"loss": "train_loss", "learning_rate": "learning_rate", "grad_norm": "grad_norm"}


class EvaluationHistory(TrainerCallback):
    """Keeps (step, val_loss) of every evaluation and passes it on (the sweep's pruner listens here)."""

    def __init__(self, report: EvaluationHook | None) -> None:
        self.report = report
        self.losses: list[tuple[int, float]] = []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        loss = float(metrics["eval_loss"])
        self.losses.append((state.global_step, loss))
        if self.report is not None:
            self.report(state.global_step, loss)

    def best(self) -> float:
        return min(loss for _, loss in self.losses)


class Throughput(TrainerCallback):
    """Real (non-padding) training tokens per second over this process's steps, evaluations excluded."""

    def __init__(self) -> None:
        self.tokens, self.seconds = 0, 0.0
        self._tokens_at_start, self._started = 0, 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._tokens_at_start, self._started = state.num_input_tokens_seen, time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.tokens += state.num_input_tokens_seen - self._tokens_at_start
        self.seconds += time.perf_counter() - self._started

    def tokens_per_second(self) -> float:
        return round(self.tokens / self.seconds, 1) if self.seconds else 0.0


class MlflowMetrics(TrainerCallback):
    """Logs the Trainer's training loss, learning rate and gradient norm to one MLflow run, by step."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client, self.run_id = client, run_id

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key, name in TRAINER_METRIC_NAMES.items():
            if logs and isinstance(logs.get(key), int | float):
                self.client.log_metric(self.run_id, name, float(logs[key]), step=state.global_step)


class TrainingProgress(TrainerCallback):
    """Updates the `training-progress` artifact every ~5% of the steps and after each evaluation."""

    def __init__(self, max_steps: int) -> None:
        self.max_steps, self.every = max_steps, max(1, max_steps // UPDATES_PER_RUN)
        self.val_loss: float | None = None
        self.artifact: ProgressArtifact | None = None

    def describe(self, step: int) -> str:
        loss = f", last val_loss {self.val_loss:.4f}" if self.val_loss is not None else ""
        return f"Training: step {step}/{self.max_steps}{loss}"

    def on_train_begin(self, args, state, control, **kwargs):
        self.artifact = ProgressArtifact(
            TRAINING_KEY, state.global_step, self.max_steps, self.describe(state.global_step)
        )

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            self.artifact.update(state.global_step, self.max_steps, self.describe(state.global_step))

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics and "eval_loss" in metrics:
            self.val_loss = float(metrics["eval_loss"])

    def on_train_end(self, args, state, control, **kwargs):
        stopped_early = state.global_step < self.max_steps
        suffix = " (stopped early: val_loss stopped improving)" if stopped_early else ""
        self.artifact.update(self.max_steps, self.max_steps, self.describe(state.global_step) + suffix)
