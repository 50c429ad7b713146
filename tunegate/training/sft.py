"""Supervised fine-tuning: prompt -> completion rows, loss on the target tokens only, dynamic padding to the
longest sequence of a batch (or packed batches on the fast path), the best checkpoint kept by the sweep objective
measured at the plan's rung steps (`TaskMetricTrainer`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from tunegate.core.errors import InputError
from tunegate.lm.prompting import PromptFormat
from tunegate.lm.sft_data import IGNORE_INDEX, encode_rows
from tunegate.training.budget import TrainingPlan
from tunegate.training.results import TrainResult

if TYPE_CHECKING:
    from tunegate.training.inputs import TrainingInputs
from tunegate.training.model_setup import load_tokenizer_for_training, trainable_model, training_arguments
from tunegate.training.run_watch import RunWatch


def run_sft_training(inputs: TrainingInputs) -> TrainResult:
    """Supervised fine-tuning on the prompt -> completion rows, loss on the target tokens only."""
    from tunegate.training.callbacks import TaskMetricTrainer

    tokenizer = load_tokenizer_for_training(inputs.model)
    prompt_format = PromptFormat.from_tokenizer(tokenizer, inputs.model.system_prompt)
    train_encoded = encode_rows(inputs.train_rows, tokenizer, prompt_format, inputs.model.max_tokens)
    val_encoded = encode_rows(
        inputs.val_rows.head(inputs.recipe.max_eval_rows), tokenizer, prompt_format, inputs.model.max_tokens
    )
    if not train_encoded.input_ids or not val_encoded.input_ids:
        raise InputError(
            f"no train or val rows fit model.max_tokens={inputs.model.max_tokens} "
            f"({train_encoded.overlength_rows} train rows were longer, the longest {train_encoded.longest_left_out})"
        )
    model = trainable_model(inputs.model, inputs.recipe)
    run = RunWatch.of(inputs.on_evaluate, inputs.plan, inputs.recipe, inputs.out_dir)
    trainer = TaskMetricTrainer(
        model=model,
        args=training_arguments(inputs.recipe, inputs.plan, run.checkpoints, run.fast),
        train_dataset=train_encoded.to_dataset(),
        eval_dataset=val_encoded.to_dataset(),
        data_collator=sft_collator(tokenizer, run.fast.packing),
        processing_class=tokenizer,
        callbacks=run.callbacks(inputs.callbacks),
        objective_rows=objective_rows(inputs.val_rows, inputs.plan) if inputs.plan.objective == "task_metric" else None,
        prompt_format=prompt_format,
        metric=inputs.plan.metric,
        labels=inputs.plan.labels,
        label_scoring=inputs.plan.label_scoring,
    )
    if run.last_checkpoint is None:  # a resumed run's weights are not the base's: no baseline to compare with
        run.health.initial_val_loss = trainer.initial_val_loss()
    return run.trained(trainer, prompt_format, train_encoded.overlength_rows + val_encoded.overlength_rows)


def sft_collator(tokenizer: Any, packing: bool) -> Any:
    """Batches of encoded rows: packed into one row (`PackedBatches`), or padded to the batch's longest with the
    padding masked out of the loss."""
    from transformers import DataCollatorForSeq2Seq

    from tunegate.training.callbacks import PackedBatches

    if packing:
        return PackedBatches()
    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)


def objective_rows(val_rows: pd.DataFrame, plan: TrainingPlan) -> pd.DataFrame:
    """The validation rows the task metric is measured on: labelled rows for a label task, the first N."""
    chosen = val_rows[val_rows["labelled"].astype(bool)] if plan.labels and "labelled" in val_rows else val_rows
    return chosen.head(plan.objective_rows).reset_index(drop=True)
