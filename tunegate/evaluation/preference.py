"""Preference pairs: DPO training (TRL's DPOTrainer) and the log-probability scores that evaluation, the exports
and the gate read.

A preference row is a canonical row of shape `preference`: its `completion` is the chosen reply, `rejected` the
other. A model scores a reply by the summed log-probability of its target tokens (the reply + EOS) after the
prompt, tokenized as SFT training and serving tokenize (prompt and target apart, `tunegate.lm.sft_data`):

- DPO's implicit reward of a reply is r = beta x (log p_policy - log p_reference), the reference being the base
  the run started from. Preference accuracy is the share of pairs with r(chosen) > r(rejected), a tie counting
  half; the reward margin is the mean r(chosen) - r(rejected) (TRL's `rewards/accuracies` and `rewards/margins`,
  here on the test pairs). The reference has no preference against itself: every pair ties, so the base scores
  exactly 0.5 and the gate's paired interval of (tuned - base) is the interval of the tuned accuracy above chance.
- `chosen_likelier`, the share of pairs whose chosen reply a model finds likelier outright, is reported for both
  models: it shows how far a base starts from the preference (summed log-probabilities favour short replies).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tunegate.core.errors import InputError
from tunegate.lm.sft_data import target_logprobs

if TYPE_CHECKING:
    from tunegate.evaluation.results import EvalResult, EvaluationOutput
    from tunegate.lm.prompting import PromptFormat

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
    from tunegate.evaluation.scoring import mean_or_nan, paired_bootstrap_ci

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
    from tunegate.evaluation.scoring import paired_bootstrap_ci

    scores = {result.task_metric: (result.base_scores, result.finetuned_scores)}
    if result.exact_scores is not None:
        scores["exact_match"] = result.exact_scores
    return {name: paired_bootstrap_ci(np.array(base), np.array(tuned), seed) for name, (base, tuned) in scores.items()}


def reference_logprobs(evaluated: EvaluationOutput) -> tuple[np.ndarray, np.ndarray] | None:
    """The base's log-probabilities of the test pairs, kept by a DPO evaluation; None for SFT."""
    if evaluated.result.task_metric != PREFERENCE_METRIC:
        return None
    scores = evaluated.scores.read()
    chosen, rejected = (scores[column].to_numpy() for column in REFERENCE_COLUMNS)
    return chosen, rejected
