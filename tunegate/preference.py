"""Preference pairs: DPO training (TRL's DPOTrainer) and the log-probability scores that evaluation, the exports
and the gate read.

A preference row is a canonical row of shape `preference`: its `completion` is the chosen reply, `rejected` the
other. A model scores a reply by the summed log-probability of its target tokens (the reply + EOS) after the
prompt, tokenized as SFT training and serving tokenize (prompt and target apart, `tunegate.sft_data`):

- DPO's implicit reward of a reply is r = beta x (log p_policy - log p_reference), the reference being the base
  the run started from. Preference accuracy is the share of pairs with r(chosen) > r(rejected), a tie counting
  half; the reward margin is the mean r(chosen) - r(rejected) (TRL's `rewards/accuracies` and `rewards/margins`,
  here on the test pairs). The reference has no preference against itself: every pair ties, so the base scores
  exactly 0.5 and the gate's paired interval of (tuned - base) is the interval of the tuned accuracy above chance.
- `chosen_likelier`, the share of pairs whose chosen reply a model finds likelier outright, is reported for both
  models: it shows how far a base starts from the preference (summed log-probabilities favour short replies).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tunegate.errors import InputError
from tunegate.sft_data import target_logprobs, token_ids

if TYPE_CHECKING:
    from tunegate.budget import TrainingPlan
    from tunegate.callbacks import EvaluationHook
    from tunegate.config import ModelConfig, TrainConfig
    from tunegate.prompting import PromptFormat
    from tunegate.stage_results import EvalResult, EvaluationOutput, TrainResult

PREFERENCE_SHAPE = "preference"
PREFERENCE_METRIC = "preference_accuracy"
# The base's summed log-probabilities of each test pair's replies, kept beside the per-row scores: builds and the
# champion are scored against the same reference without loading the base again.
REFERENCE_COLUMNS = ("reference_chosen", "reference_rejected")


def preference_pairs(rows: pd.DataFrame, split: str) -> pd.DataFrame:
    """The split's preference rows; a one-line InputError when there are none or other shapes are mixed in (DPO
    has nothing to learn from a row without a rejected reply)."""
    shapes = rows["shape"].value_counts().to_dict() if "shape" in rows else {}
    others = {shape: count for shape, count in shapes.items() if shape != PREFERENCE_SHAPE}
    if others or not shapes:
        raise InputError(
            f"train.objective=dpo: the {split} split must hold preference rows only (prompt, chosen, rejected); "
            f"it has {shapes.get(PREFERENCE_SHAPE, 0)} and {others or 'no rows'} of other shapes"
        )
    return rows.reset_index(drop=True)


def reply_logprobs(
    model: Any, tokenizer: Any, prompt_format: PromptFormat, rows: pd.DataFrame, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(chosen, rejected): each pair's summed target-token log-probability of either reply under `model`."""
    chosen = sequence_logprobs(model, tokenizer, prompt_format, rows, batch_size)
    rejected = sequence_logprobs(model, tokenizer, prompt_format, rows.assign(completion=rows["rejected"]), batch_size)
    return chosen, rejected


def sequence_logprobs(
    model: Any, tokenizer: Any, prompt_format: PromptFormat, rows: pd.DataFrame, batch_size: int
) -> np.ndarray:
    """Summed log-probability of each row's target tokens given its prompt (teacher forcing, no truncation)."""
    return target_logprobs(model, tokenizer, prompt_format, rows, batch_size)[0]


def chosen_likelier(chosen: np.ndarray, rejected: np.ndarray) -> np.ndarray:
    """1 where the chosen reply is likelier than the rejected one, else 0."""
    return (chosen > rejected).astype(float)


def reward_margins(
    policy: tuple[np.ndarray, np.ndarray], reference: tuple[np.ndarray, np.ndarray], beta: float
) -> np.ndarray:
    """Per pair, r(chosen) - r(rejected) with r = beta x (log p_policy - log p_reference)."""
    return beta * ((policy[0] - reference[0]) - (policy[1] - reference[1]))


def preference_accuracy_scores(margins: np.ndarray) -> np.ndarray:
    """Per pair: 1 where the implicit reward prefers chosen, 0.5 for a tie, 0 where it prefers rejected. Margins
    within 1e-6 nats of 0 are ties: the reference scored against itself gives float noise, not a preference."""
    return np.where(np.abs(margins) <= 1e-6, 0.5, (margins > 0).astype(float))


def pair_scores(
    model: Any,
    tokenizer: Any,
    prompt_format: PromptFormat,
    rows: pd.DataFrame,
    reference: tuple[np.ndarray, np.ndarray],
    batch_size: int,
) -> np.ndarray:
    """Per-pair preference accuracy of `model` against the reference's log-probabilities on the same rows (the
    scores do not depend on beta)."""
    policy = reply_logprobs(model, tokenizer, prompt_format, rows, batch_size)
    return preference_accuracy_scores(reward_margins(policy, reference, beta=1.0))


def preference_result(
    result: EvalResult,
    reference: tuple[np.ndarray, np.ndarray],
    policy: tuple[np.ndarray, np.ndarray],
    beta: float,
    seed: int,
) -> EvalResult:
    """`result` (the generations' metrics) judged on the pairs instead: preference accuracy is its task metric (the
    base at 0.5, with the paired interval of the gain), with the reward margin and `chosen_likelier` beside it."""
    from tunegate.scoring import mean_or_nan, paired_bootstrap_ci

    margins = reward_margins(policy, reference, beta)
    tuned_scores = preference_accuracy_scores(margins / beta)  # ties judged in nats, as `pair_scores` judges them
    base_scores = preference_accuracy_scores(np.zeros_like(margins))
    base = {
        **result.base,
        PREFERENCE_METRIC: mean_or_nan(base_scores),
        "reward_margin": mean_or_nan(np.zeros_like(margins)),
        "chosen_likelier": mean_or_nan(chosen_likelier(*reference)),
    }
    finetuned = {
        **result.finetuned,
        PREFERENCE_METRIC: mean_or_nan(tuned_scores),
        "reward_margin": mean_or_nan(margins),
        "chosen_likelier": mean_or_nan(chosen_likelier(*policy)),
    }
    return result.model_copy(
        update={
            "task_metric": PREFERENCE_METRIC,
            "base": base,
            "finetuned": finetuned,
            "delta": mean_or_nan(tuned_scores - base_scores),
            "delta_ci95": paired_bootstrap_ci(base_scores, tuned_scores, seed),
            "generation_ci95": generation_intervals(result, seed),
            "base_scores": base_scores.tolist(),
            "finetuned_scores": tuned_scores.tolist(),
        }
    )


def generation_intervals(result: EvalResult, seed: int) -> dict[str, tuple[float, float]]:
    """The paired 95% interval of (fine-tuned - base) for each metric of the generations against the chosen replies:
    the task metric (accuracy or ROUGE-L) and, on free text, exact match (a label-like reply can keep its ROUGE-L
    while it stops being exactly right: 0.175 -> 0.088 on the 42-intent pairs, ROUGE-L 0.515 -> 0.491)."""
    from tunegate.scoring import paired_bootstrap_ci

    scores = {result.task_metric: (result.base_scores, result.finetuned_scores)}
    if result.exact_scores is not None:
        scores["exact_match"] = result.exact_scores
    return {name: paired_bootstrap_ci(np.array(base), np.array(tuned), seed) for name, (base, tuned) in scores.items()}


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


def run_dpo_training(
    train_rows: pd.DataFrame,
    val_rows: pd.DataFrame,
    model_config: ModelConfig,
    train_config: TrainConfig,
    plan: TrainingPlan,
    out_dir: Path,
    on_evaluate: EvaluationHook | None = None,
    callbacks: list[Any] | None = None,
) -> TrainResult:
    """DPO from the base model (or the last checkpoint in out_dir) on `plan`: the same checkpoints, rung
    evaluations (the DPO loss of the val pairs), health checks, throughput and saved directory as SFT."""
    import torch
    from trl import DPOConfig

    from tunegate.prompting import PromptFormat
    from tunegate.training import (
        RunWatch,
        load_base_model,
        load_tokenizer_for_training,
        lora_config,
        training_arguments,
    )

    tokenizer = load_tokenizer_for_training(model_config)
    prompt_format = PromptFormat.from_tokenizer(tokenizer, model_config.system_prompt)
    train_pairs, train_over, train_longest = dpo_dataset(
        preference_pairs(train_rows, "train"), tokenizer, prompt_format, model_config.max_tokens
    )
    val_pairs, val_over, _ = dpo_dataset(
        preference_pairs(val_rows, "val").head(train_config.max_eval_rows), tokenizer, prompt_format, 10**9
    )
    if not len(train_pairs) or not len(val_pairs):
        raise InputError(
            f"no train or val preference pairs fit model.max_tokens={model_config.max_tokens} "
            f"({train_over} train pairs were longer, the longest {train_longest})"
        )
    torch.manual_seed(train_config.seed)  # adapter initialisation is part of the run's recipe
    model = load_base_model(model_config, train_config)
    # The DPO term starts at ln 2 (the policy is its reference) and is what training removes; the SFT term starts
    # near its floor on an SFT-trained base (demo: 1.695 = 0.693 + 1.002), where 5% of the whole loss took 3 of 4
    # trials at sound rates for unhealthy at the first rung.
    run = RunWatch.of(on_evaluate, plan, train_config, out_dir, removable_loss=math.log(2), packs=False)
    arguments = training_arguments(
        train_config,
        plan,
        run.checkpoints,
        run.fast,
        arguments_class=DPOConfig,
        beta=train_config.dpo_beta,
        loss_type=["sigmoid", "sft"] if train_config.dpo_sft_weight else ["sigmoid"],
        loss_weights=[1.0, train_config.dpo_sft_weight] if train_config.dpo_sft_weight else None,
        max_length=None,  # pairs that do not fit were left out above
        gradient_checkpointing=train_config.gradient_checkpointing,
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
        peft_config=None if train_config.method == "full" else lora_config(train_config),
        callbacks=run.callbacks(callbacks),
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


def reference_logprobs(evaluated: EvaluationOutput) -> tuple[np.ndarray, np.ndarray] | None:
    """The base's log-probabilities of the test pairs, kept by a DPO evaluation; None for SFT."""
    if evaluated.result.task_metric != PREFERENCE_METRIC:
        return None
    scores = evaluated.scores.read()
    chosen, rejected = (scores[column].to_numpy() for column in REFERENCE_COLUMNS)
    return chosen, rejected
