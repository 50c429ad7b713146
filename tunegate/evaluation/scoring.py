"""Scoring generations against expected answers: one definition for the sweep objective, evaluation and the gate.

The task metric is accuracy (normalised exact label match) when the task has labels, ROUGE-L F1 otherwise.
Generation is greedy and batched with left padding, so a trial's objective, the evaluation stage and the
registered model all score the same text the same way. Metrics come from packages that ship their code
(scikit-learn, rouge-score), never from Hub-loaded metric scripts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from tunegate.lm.model_loading import stop_token_ids

BOOTSTRAP_RESAMPLES = 1000
FREE_TEXT_NEW_TOKENS = 64


def task_metric_name(labels: list[str] | None) -> str:
    return "accuracy" if labels else "rouge_l"


def tie_broken(value: float, val_loss: float) -> float:
    """A task metric (greater is better) with ties broken toward the lower val loss.

    Accuracy on a few hundred rows moves in steps of ~0.005 and ties often (every trial at 0 early on, with many
    labels): 1e-6 x val loss (< 1e-4 for any loss below 100) orders equal values without reordering distinct ones.
    NaN (never measured) ranks last."""
    return value - 1e-6 * val_loss if not math.isnan(value) else -math.inf


def normalize_answer(text: str) -> str:
    """First line, lower-cased, inner whitespace collapsed, surrounding punctuation stripped."""
    first_line = text.strip().split("\n", 1)[0] if text.strip() else ""
    return re.sub(r"\s+", " ", first_line).strip().strip(".!?,;:'\"").strip().lower()


def scores_for_metric(metric: str, rows: pd.DataFrame, generations: list[str]) -> np.ndarray:
    """Per-row scores of `generations` against the rows' completions: accuracy (0/1) or ROUGE-L F1."""
    predicted = [normalize_answer(g) for g in generations]
    expected = [normalize_answer(c) for c in rows["completion"]]
    if metric == "accuracy":
        return np.array([p == e for p, e in zip(predicted, expected, strict=True)], dtype=float)
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return np.array([scorer.score(e, p)["rougeL"].fmeasure for p, e in zip(predicted, expected, strict=True)])


def mean_or_nan(scores: np.ndarray) -> float:
    """The mean score, NaN for no rows (never a promotable number: the gate refuses NaN)."""
    return float(scores.mean()) if len(scores) else math.nan


def paired_bootstrap_ci(base: np.ndarray, tuned: np.ndarray, seed: int) -> tuple[float, float]:
    """95% interval of mean(tuned - base), resampling rows with replacement (pairs stay together);
    (NaN, NaN) when there are no rows."""
    differences = tuned - base
    if len(differences) == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    resampled = rng.integers(0, len(differences), size=(BOOTSTRAP_RESAMPLES, len(differences)))
    means = differences[resampled].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def label_token_budget(tokenizer: Any, labels: list[str]) -> int:
    """Enough new tokens for the longest label plus end-of-sequence and a little slack."""
    return max(len(tokenizer(label, add_special_tokens=False)["input_ids"]) for label in labels) + 3


def new_token_budget(tokenizer: Any, labels: list[str] | None) -> int:
    return label_token_budget(tokenizer, labels) if labels else FREE_TEXT_NEW_TOKENS


# Called per batch with (the batch's prompt indices, the tokenized batch, `generate`'s output with the raw logits
# of each step and the key/value cache): work that reuses the batch's one pass over its prompts.
AfterPrompts = Callable[[list[int], Any, Any], None]


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int,
    after_prompts: AfterPrompts | None = None,
) -> list[str]:
    """Greedy continuations of each prompt, batched with left padding (the model's device is used)."""
    import torch

    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    outputs: dict[int, str] = {}
    order = by_length(tokenizer(prompts, add_special_tokens=True)["input_ids"]) if prompts else []
    try:
        for start in range(0, len(prompts), batch_size):
            chosen = order[start : start + batch_size]
            batch = tokenizer(
                [prompts[i] for i in chosen], return_tensors="pt", padding=True, add_special_tokens=True
            ).to(device)
            with torch.no_grad():
                generated = model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=stop_token_ids(tokenizer, getattr(model, "generation_config", None)),
                    **({"return_dict_in_generate": True, "output_logits": True} if after_prompts else {}),
                )
                if after_prompts:
                    after_prompts(chosen, batch, generated)
                    generated = generated.sequences
            new_tokens = generated[:, batch["input_ids"].shape[1] :]
            answers = [tokenizer.decode(row, skip_special_tokens=True) for row in new_tokens]
            outputs.update(zip(chosen, answers, strict=True))
    finally:
        tokenizer.padding_side = "right"
    return [outputs[i] for i in range(len(prompts))]


def by_length(token_ids: list[list[int]]) -> list[int]:
    """Row indices from the longest sequence to the shortest (ties in row order): batches of similar lengths carry
    little padding (the demo's test tickets run 50-120 tokens: in row order a batch of 32 is ~30% padding), and the
    longest batch comes first, so running out of memory shows at once.

    >>> by_length([[1], [1, 2, 3], [1, 2]])
    [1, 2, 0]
    """
    return sorted(range(len(token_ids)), key=lambda i: -len(token_ids[i]))
