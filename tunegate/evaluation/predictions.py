"""One model's predictions on the evaluation rows: greedy generations, the mean target-token loss and, for
labelled tasks, the likeliest label; the base and the fine-tuned model predicted on the same rows (an adapter's
base is the same model with its adapters disabled)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd

from tunegate.evaluation.comparison import compare_models
from tunegate.evaluation.label_likelihood import (
    generations_and_label_logprobs,
    label_choices,
    label_token_counts,
)
from tunegate.evaluation.results import EvalResult, Predictions
from tunegate.evaluation.scoring import (
    generate,
    new_token_budget,
)
from tunegate.lm.model_loading import merged_for_inference
from tunegate.lm.prompting import PromptFormat
from tunegate.lm.sft_data import target_logprobs


def predict(
    model: Any,
    tokenizer: Any,
    prompt_format: PromptFormat,
    rows: pd.DataFrame,
    labels: list[str] | None,
    batch_size: int,
) -> Predictions:
    """Mean target-token loss (teacher forcing), greedy generations and, for labelled tasks, the likeliest label,
    for every row."""
    budget = new_token_budget(tokenizer, labels)
    if not labels or not set(rows["completion"]) <= set(labels):
        prompts = [prompt_format.format_row(row).prompt for row in rows.to_dict("records")]
        generations = generate(model, tokenizer, prompts, budget, batch_size)
        loss = target_token_loss(model, tokenizer, prompt_format, rows, batch_size)
        choices = label_choices(model, tokenizer, prompt_format, rows, labels, batch_size) if labels else None
        return Predictions(loss=loss, generations=generations, label_choices=choices)
    # Every row's target is one of the labels, so the label scores hold its loss too, and they come from the same
    # pass over the prompts as the greedy answers: one pass instead of three.
    generations, scores = generations_and_label_logprobs(
        model, tokenizer, prompt_format, rows, labels, budget, batch_size
    )
    counts = label_token_counts(tokenizer, prompt_format, labels)
    expected = [labels.index(completion) for completion in rows["completion"]]
    nll = -sum(scores[row, label] for row, label in enumerate(expected))
    loss = float(nll / sum(counts[label] for label in expected)) if expected else math.nan
    return Predictions(loss=loss, generations=generations, label_choices=[labels[i] for i in scores.argmax(axis=1)])


def target_token_loss(
    model: Any, tokenizer: Any, prompt_format: PromptFormat, rows: pd.DataFrame, batch_size: int
) -> float:
    """Mean negative log-likelihood per target token over the rows (NaN for none)."""
    sums, counts = target_logprobs(model, tokenizer, prompt_format, rows, batch_size)
    return float(-sums.sum() / counts.sum()) if counts.sum() else math.nan


def evaluate_against_base(
    tuned_model: Any,
    tokenizer: Any,
    prompt_format: PromptFormat,
    rows: pd.DataFrame,
    labels: list[str] | None,
    batch_size: int = 16,
    seed: int = 0,
    base_model: Any | None = None,
    label_scoring: str = "generation",
) -> EvalResult:
    """Base and fine-tuned predictions on the same rows, compared. The base is `base_model` when given
    (full fine-tuning), else the tuned PEFT model with its adapters disabled."""
    with base_view(tuned_model, base_model) as base_weights:
        base = predict(base_weights, tokenizer, prompt_format, rows, labels, batch_size)
    with merged_for_inference(tuned_model) as merged:
        tuned = predict(merged, tokenizer, prompt_format, rows, labels, batch_size)
    return compare_models(rows, base, tuned, labels, seed, label_scoring)


@contextmanager
def base_view(tuned_model: Any, base_model: Any | None) -> Iterator[Any]:
    """The base to compare with: `base_model` when given (whole fine-tuned weights), else the tuned PEFT model
    with its adapters disabled for the duration."""
    if base_model is not None:
        yield base_model
        return
    with tuned_model.disable_adapter():
        yield tuned_model


def evaluation_rows(test: pd.DataFrame, labels: list[str] | None, max_rows: int) -> pd.DataFrame:
    """Rows the task metric is measured on: labelled rows for a label task, else every row; the first max_rows."""
    chosen = test[test["labelled"].astype(bool)] if labels else test
    return chosen.head(max_rows).reset_index(drop=True)
