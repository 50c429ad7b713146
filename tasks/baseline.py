"""Baseline: is the LLM worth it? A TF-IDF + logistic regression classifier (`tunegate.evaluation.baseline`)
fitted on the train split's prompt -> label pairs only (never validation or test rows) and scored on exactly the
evaluation's rows, with the paired bootstrap interval of (tuned - baseline). Seconds, cached like every stage.

Free-text tasks and preference pairs have no labels to classify: the result says so in `skipped`.
"""

from __future__ import annotations

import pandas as pd
from prefect import task

from tunegate.config.registry import BaselineSettings
from tunegate.core.refs import TableRef, write_table
from tunegate.evaluation.baseline import (
    baseline_result,
    fit_baseline,
    labelled_pairs,
    predicted_labels,
    vocabulary,
)
from tunegate.evaluation.results import BaselineResult, EvaluationOutput
from tunegate.runtime.caching import stage_cache_policy
from tunegate.runtime.stages import stage_directory


def skip_reason(settings: BaselineSettings, train_labels: list[str]) -> str | None:
    """Why this task gets no classical baseline, else None."""
    if not settings.enabled:
        return "turned off (eval.baseline: false)"
    if settings.preference_pairs:
        return "preference pairs have no labels to classify"
    if not settings.labels:
        return "a free-text task has no labels to classify (task.labels is unset)"
    if not train_labels:
        return "the train split has no labelled rows"
    return None


@task(cache_policy=stage_cache_policy())
def score_baseline(train: TableRef, evaluated: EvaluationOutput, settings: BaselineSettings) -> BaselineResult:
    """Fit on the train split, predict the evaluation rows, compare with the tuned model's per-row scores; writes
    the predictions and the learnt vocabulary under home/eval/baseline-<key>/."""
    prompts, labels = labelled_pairs(train.read(["prompt", "completion", "labelled"]))
    skipped = skip_reason(settings, labels)
    if skipped:
        return BaselineResult(skipped=skipped)
    out_dir = stage_directory(
        settings.home, "eval/baseline", __file__, train.fingerprint, evaluated.rows.fingerprint, str(settings.seed)
    )
    fitted = fit_baseline(prompts, labels, settings.seed)
    rows = evaluated.rows.read()
    predicted = predicted_labels(fitted, rows)
    tuned_scores = evaluated.scores.read(["finetuned"])["finetuned"].to_numpy()
    result = baseline_result(predicted, rows, settings.labels or [], tuned_scores, settings.seed)
    predictions = pd.DataFrame({"prompt": rows["prompt"], "expected": rows["completion"], "predicted": predicted})
    terms = pd.DataFrame({"term": sorted(vocabulary(fitted))})
    return result.model_copy(
        update={
            "train_rows": len(prompts),
            "vocabulary_size": len(terms),
            "predictions": write_table(predictions, out_dir / "predictions.parquet"),
            "vocabulary": write_table(terms, out_dir / "vocabulary.parquet"),
        }
    )
