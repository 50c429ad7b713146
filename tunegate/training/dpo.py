"""DPO training (TRL's DPOTrainer) on preference pairs: prompt and replies tokenized apart as SFT and serving
tokenize them, pairs too long for `model.max_tokens` left out and counted, and the same checkpoints, rung
evaluations (the val pairs' DPO loss), health checks and saved directory as SFT (`RunWatch`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pandas as pd

from tunegate.core.errors import InputError
from tunegate.lm.sft_data import token_ids

if TYPE_CHECKING:
    from tunegate.lm.prompting import PromptFormat
    from tunegate.training.inputs import TrainingInputs
    from tunegate.training.results import TrainResult
from tunegate.evaluation.preference import preference_pairs


def dpo_dataset(
    rows: pd.DataFrame, tokenizer: Any, prompt_format: PromptFormat, max_tokens: int
) -> tuple[Any, int, int]:
    """(the pairs as token ids, pairs left out as longer than `max_tokens`, the longest of them).

    Prompt and replies are tokenized apart, as SFT and serving tokenize them: a reply starts with the tokens the
    model generates after the prompt (TRL tokenizes prompt + reply as one string, which with a prefix-space
    tokenizer splits the demo's `billing` into b/ill/ing instead of the generated `Ġbilling`). Each reply ends with
    EOS. A pair whose prompt plus longer reply exceeds `max_tokens` is left out and counted, never cut."""
    from datasets import Dataset

    records = rows.to_dict("records")
    prompts = token_ids(tokenizer, [prompt_format.format_row(r).prompt for r in records], with_special_tokens=True)
    chosen = token_ids(tokenizer, [prompt_format.format_row(r).target for r in records], with_special_tokens=False)
    rejected = token_ids(
        tokenizer,
        [prompt_format.format_row({**r, "completion": r["rejected"]}).target for r in records],
        with_special_tokens=False,
    )
    lengths = [len(p) + max(len(c), len(r)) for p, c, r in zip(prompts, chosen, rejected, strict=True)]
    kept = [i for i, length in enumerate(lengths) if length <= max_tokens]
    dataset = Dataset.from_dict(
        {
            "prompt_ids": [prompts[i] for i in kept],
            "chosen_ids": [chosen[i] for i in kept],
            "rejected_ids": [rejected[i] for i in kept],
        }
    )
    left_out = [length for length in lengths if length > max_tokens]
    return dataset, len(left_out), max(left_out, default=0)


def pretokenized_dpo_trainer(**arguments: Any) -> Any:
    """TRL's DPOTrainer fed pairs that are already token ids (`dpo_dataset`): its own preparation (prompt
    extraction, EOS, joint tokenization) is skipped for them, everything else is TRL's."""
    from trl import DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
            if "prompt_ids" in dataset.column_names:
                return dataset
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    return PretokenizedDPOTrainer(**arguments)


def run_dpo_training(inputs: TrainingInputs) -> TrainResult:
    """DPO from the base model (or the last checkpoint in the output directory) on the plan: the same checkpoints, rung
    evaluations (the DPO loss of the val pairs), health checks, throughput and saved directory as SFT."""
    import torch
    from trl import DPOConfig

    from tunegate.lm.prompting import PromptFormat
    from tunegate.training.model_setup import (
        load_base_model,
        load_tokenizer_for_training,
        lora_config,
        training_arguments,
    )
    from tunegate.training.run_watch import RunWatch

    tokenizer = load_tokenizer_for_training(inputs.model)
    prompt_format = PromptFormat.from_tokenizer(tokenizer, inputs.model.system_prompt)
    train_pairs, train_over, train_longest = dpo_dataset(
        preference_pairs(inputs.train_rows, "train"), tokenizer, prompt_format, inputs.model.max_tokens
    )
    val_pairs, val_over, _ = dpo_dataset(
        preference_pairs(inputs.val_rows, "val").head(inputs.recipe.max_eval_rows), tokenizer, prompt_format, 10**9
    )
    if not len(train_pairs) or not len(val_pairs):
        raise InputError(
            f"no train or val preference pairs fit model.max_tokens={inputs.model.max_tokens} "
            f"({train_over} train pairs were longer, the longest {train_longest})"
        )
    torch.manual_seed(inputs.recipe.seed)  # adapter initialisation is part of the run's recipe
    model = load_base_model(inputs.model, inputs.recipe)
    # The DPO term starts at ln 2 (the policy is its reference) and is what training removes; the SFT term starts
    # near its floor on an SFT-trained base (demo: 1.695 = 0.693 + 1.002), where 5% of the whole loss took 3 of 4
    # trials at sound rates for unhealthy at the first rung.
    run = RunWatch.of(
        inputs.on_evaluate, inputs.plan, inputs.recipe, inputs.out_dir, removable_loss=math.log(2), packs=False
    )
    arguments = training_arguments(
        inputs.recipe,
        inputs.plan,
        run.checkpoints,
        run.fast,
        arguments_class=DPOConfig,
        beta=inputs.recipe.dpo_beta,
        loss_type=["sigmoid", "sft"] if inputs.recipe.dpo_sft_weight else ["sigmoid"],
        loss_weights=[1.0, inputs.recipe.dpo_sft_weight] if inputs.recipe.dpo_sft_weight else None,
        max_length=None,  # pairs that do not fit were left out above
        gradient_checkpointing=inputs.recipe.gradient_checkpointing,
        metric_for_best_model="loss",  # the held-out pairs' DPO loss, lower is better
        greater_is_better=False,
        train_sampling_strategy="random",  # the pairs carry no `length` column to group by
    )
    trainer = pretokenized_dpo_trainer(
        model=model,
        args=arguments,
        train_dataset=train_pairs,
        eval_dataset=val_pairs,
        processing_class=tokenizer,
        peft_config=None if inputs.recipe.method == "full" else lora_config(inputs.recipe, model),
        callbacks=run.callbacks(inputs.callbacks),
    )
    if run.last_checkpoint is None:  # a resumed run's weights are not the base's: no baseline to compare with
        run.health.initial_val_loss = initial_val_loss(trainer)
    return run.trained(trainer, prompt_format, train_over + val_over)


def initial_val_loss(trainer: Any) -> float:
    """The val pairs' loss before the first step, without callbacks or logging: the health check's baseline (ln 2 for
    plain DPO, whose policy starts as its reference; plus the chosen replies' NLL with the SFT term)."""
    output = trainer.evaluation_loop(
        trainer.get_eval_dataloader(), description="Initial", prediction_loss_only=True, metric_key_prefix="initial"
    )
    # TRL averages the reward metrics it collects into the next log line: this pass is not part of training.
    getattr(trainer, "_metrics", {}).get("eval", {}).clear()
    return float(output.metrics["initial_loss"])
