"""The Trainer pieces of a training run: the objective measured inside evaluation, evaluations at the rung
steps, training health, evaluation history, throughput, MLflow metrics, Prefect progress.

They live apart from the stage modules so that importing a flow does not import transformers (and with it
torch and PEFT, ~6 s): a run whose stages are all cached never needs them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from transformers import DataCollatorWithFlattening, Trainer, TrainerCallback

from tunegate.evaluation.scoring import generate, mean_or_nan, new_token_budget, scores_for_metric, tie_broken
from tunegate.lm.model_loading import merged_for_inference
from tunegate.runtime.progress import TRAINING_KEY, UPDATES_PER_RUN, ProgressArtifact
from tunegate.training.health import HealthWatch

SELECTION = "selection"  # the metric the best checkpoint is chosen on (greater is better)
# Called with (step, {"val_loss": ..., <objective metric>: ...}) after each evaluation; may raise to stop a trial.
EvaluationHook = Callable[[int, dict[str, float]], None]
# Trainer log keys → the names every run uses.
TRAINER_METRIC_NAMES = {"loss": "train_loss", "learning_rate": "learning_rate", "grad_norm": "grad_norm"}


class TaskMetricTrainer(Trainer):
    """A Trainer whose evaluation also scores greedy generations on validation rows with the task metric.

    The metric is added to the evaluation's metrics (`eval_accuracy`), so the log, every callback's
    `on_evaluate` (the pruner listens there), the best-checkpoint choice (`metric_for_best_model`) and early
    stopping all see it."""

    def __init__(
        self,
        *args: Any,
        objective_rows: Any = None,
        prompt_format: Any = None,
        metric: str = "",
        labels: Any = None,
        label_scoring: str = "generation",
        **kwargs: Any,
    ):
        from tunegate.lm.sft_data import target_token_cross_entropy

        super().__init__(*args, compute_loss_func=target_token_cross_entropy, **kwargs)
        self.objective_rows, self.metric, self.labels = objective_rows, metric, labels
        self.label_scoring = label_scoring
        self.prompt_format = prompt_format

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        """The Trainer's loss with the output layer run only at target positions where the model can take a mask
        (`sft_data.next_token_targets`), scored by `sft_data.target_token_cross_entropy` (the `compute_loss_func`):
        the model's own loss value at a fraction of the memory and output-layer FLOPs. The Trainer keeps its own
        scaling for gradient accumulation and for tokens counted across DDP processes."""
        from tunegate.lm.sft_data import next_token_targets, takes_target_mask

        if "labels" in inputs and takes_target_mask(self.accelerator.unwrap_model(model)):
            inputs = {**inputs, "logits_to_keep": next_token_targets(inputs["labels"])[0]}
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def evaluation_loop(self, *args: Any, **kwargs: Any) -> Any:
        # LoRA merged into the base for the val loss and the objective: each rung's evaluation runs ~1.5x faster
        # on CPU (`merged_for_inference`), and training resumes on the unmerged adapter.
        with merged_for_inference(self.model):
            output = super().evaluation_loop(*args, **kwargs)
            value = None if self.objective_rows is None else self.task_metric()
        prefix = kwargs.get("metric_key_prefix", "eval")
        loss = output.metrics[f"{prefix}_loss"]
        if value is None:
            output.metrics[f"{prefix}_{SELECTION}"] = -loss
            return output
        output.metrics[f"{prefix}_{self.metric}"] = value
        output.metrics[f"{prefix}_{SELECTION}"] = tie_broken(value, loss)
        return output

    def initial_val_loss(self) -> float:
        """Validation loss before the first step (no callbacks, nothing logged): the health check's baseline. A
        fresh LoRA adds zero, so merged it is the base's loss to the bit, at the base's speed (a merged forward
        measured 1.5x faster, `merged_for_inference`; unmerged this took 16 s on SmolLM2's 64 demo val rows)."""
        with merged_for_inference(self.model):
            output = super().evaluation_loop(
                self.get_eval_dataloader(),
                description="Initial",
                prediction_loss_only=True,
                metric_key_prefix="initial",
            )
        return float(output.metrics["initial_loss"])

    def task_metric(self) -> float:
        self.model.eval()
        batch_size = self.args.per_device_eval_batch_size
        if self.labels and self.label_scoring == "likelihood":
            from tunegate.evaluation.label_likelihood import label_choices

            choices = label_choices(
                self.model, self.processing_class, self.prompt_format, self.objective_rows, self.labels, batch_size
            )
            return mean_or_nan(scores_for_metric(self.metric, self.objective_rows, choices))
        prompts = [self.prompt_format.format_row(row).prompt for row in self.objective_rows.to_dict("records")]
        generations = generate(
            self.model,
            self.processing_class,
            prompts,
            new_token_budget(self.processing_class, self.labels),
            batch_size,
        )
        return mean_or_nan(scores_for_metric(self.metric, self.objective_rows, generations))


class PackedBatches(DataCollatorWithFlattening):
    """Padding-free batches: the sequences concatenated into one row, position ids restarting at 0 for each, the
    first label of each masked (no token is predicted across a boundary), and no KV cache: transformers finds the
    sequences from the position ids (a block-diagonal mask, or FlashAttention's varlen path) only when the forward
    pass has no cache; with one (a forward's default in eval mode) they attend across each other (val loss +0.05)."""

    def __init__(self) -> None:
        from tunegate.lm.sft_data import IGNORE_INDEX

        super().__init__(return_position_ids=True, separator_id=IGNORE_INDEX)

    def __call__(self, features: list[dict[str, Any]], return_tensors: Any = None, separator_id: Any = None) -> Any:
        batch = super().__call__(features, return_tensors, separator_id)
        batch["use_cache"] = False
        return batch


class EvaluateAt(TrainerCallback):
    """Evaluates (and checkpoints) at the given steps, the sweep's rungs; checkpoints every `save_steps` too."""

    def __init__(self, steps: list[int], save_steps: int) -> None:
        self.steps, self.save_steps = set(steps), save_steps

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.steps:
            control.should_evaluate = control.should_save = True
        elif state.global_step % self.save_steps == 0:
            control.should_save = True


class TrainingHealthCallback(TrainerCallback):
    """Feeds each logged loss and gradient norm, and each val loss, to a HealthWatch; an unhealthy run stops."""

    def __init__(self, watch: HealthWatch) -> None:
        self.watch = watch

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.watch.observe(state.global_step, float(logs["loss"]), _float_or_none(logs.get("grad_norm")))
            if self.watch.unhealthy:
                control.should_training_stop = True

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.watch.observe_evaluation(state.global_step, float(metrics["eval_loss"]))
        if self.watch.unhealthy:
            control.should_training_stop = True


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


class EvaluationHistory(TrainerCallback):
    """Keeps (step, val_loss) and (step, objective) of every evaluation and passes them on (the pruner)."""

    def __init__(self, report: EvaluationHook | None, metric: str) -> None:
        self.report, self.metric = report, metric
        self.losses: list[tuple[int, float]] = []
        self.objective: list[tuple[int, float]] = []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        loss = float(metrics["eval_loss"])
        value = float(metrics.get(f"eval_{self.metric}", loss))
        self.losses.append((state.global_step, loss))
        self.objective.append((state.global_step, value))
        if self.report is not None:
            self.report(state.global_step, {"val_loss": loss, self.metric: value})


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
