"""Base vs fine-tuned on the same rows: each model's metrics (accuracy, macro-F1 and F1 per label for labelled
rows, ROUGE-L and exact match for free text, loss and perplexity), the delta of the task metric with its paired
bootstrap interval, and side-by-side examples."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from tunegate.evaluation.results import EvalResult, Predictions
from tunegate.evaluation.scoring import (
    mean_or_nan,
    normalize_answer,
    paired_bootstrap_ci,
    scores_for_metric,
    task_metric_name,
)

SIDE_BY_SIDE_EXAMPLES = 5


def per_row_scores(rows: pd.DataFrame, generations: list[str], labels: list[str] | None) -> tuple[str, np.ndarray]:
    """(task metric name, one score per row): exact label match for label tasks, ROUGE-L F1 otherwise."""
    metric = task_metric_name(labels)
    return metric, scores_for_metric(metric, rows, generations)


def summary_metrics(rows: pd.DataFrame, predictions: Predictions, labels: list[str] | None) -> dict[str, float]:
    """The task metric, its companion (macro-F1 or exact match), loss and perplexity for one model; for labelled
    tasks also the label-likelihood accuracy and macro-F1 when they were scored."""
    name, scores = per_row_scores(rows, predictions.generations, labels)
    metrics = {name: mean_or_nan(scores), "loss": predictions.loss, "perplexity": safe_exp(predictions.loss)}
    if not labels:
        predicted = [normalize_answer(g) for g in predictions.generations]
        expected = [normalize_answer(c) for c in rows["completion"]]
        matches = [p == e for p, e in zip(predicted, expected, strict=True)]
        return {**metrics, "exact_match": float(np.mean(matches)) if matches else math.nan}
    metrics["macro_f1"] = macro_f1(rows, predictions.generations, labels)
    if predictions.label_choices is not None:
        metrics["likelihood_accuracy"] = mean_or_nan(scores_for_metric("accuracy", rows, predictions.label_choices))
        metrics["likelihood_macro_f1"] = macro_f1(rows, predictions.label_choices, labels)
    return metrics


def macro_f1(rows: pd.DataFrame, answers: list[str], labels: list[str]) -> float:
    """Macro-F1 of the answers over the label set (NaN for no rows)."""
    return float(label_f1(rows, answers, labels, average="macro")) if len(rows) else math.nan


def label_f1(rows: pd.DataFrame, answers: list[str], labels: list[str], average: str | None) -> Any:
    """scikit-learn's F1 of the normalised answers against the rows' completions over the label set."""
    from sklearn.metrics import f1_score

    predicted = [normalize_answer(g) for g in answers]
    expected = [normalize_answer(c) for c in rows["completion"]]
    names = [normalize_answer(x) for x in labels]
    return f1_score(expected, predicted, labels=names, average=average, zero_division=0)


def safe_exp(loss: float) -> float:
    """exp(loss) without overflow (capped at e^700); NaN stays NaN."""
    return math.exp(min(loss, 700.0)) if not math.isnan(loss) else math.nan


def f1_per_label(rows: pd.DataFrame, generations: list[str], labels: list[str]) -> dict[str, float]:
    """F1 of each label on these rows (0 for a label never predicted nor expected)."""
    if not len(rows):
        return {label: math.nan for label in labels}
    scores = label_f1(rows, generations, labels, average=None)
    return {label: round(float(score), 4) for label, score in zip(labels, scores, strict=True)}


def compare_models(
    rows: pd.DataFrame,
    base: Predictions,
    tuned: Predictions,
    labels: list[str] | None,
    seed: int = 0,
    label_scoring: str = "generation",
) -> EvalResult:
    """Metrics of both models, the delta of the task metric (on the answers `label_scoring` names) with its
    bootstrap interval, examples."""
    scoring = label_scoring if labels else "generation"
    name, base_scores = per_row_scores(rows, base.answers(scoring), labels)
    _, tuned_scores = per_row_scores(rows, tuned.answers(scoring), labels)
    examples = [
        {"prompt": str(row["prompt"])[:300], "expected": str(row["completion"]), "base": b, "finetuned": t}
        for row, b, t in zip(
            rows.head(SIDE_BY_SIDE_EXAMPLES).to_dict("records"), base.generations, tuned.generations, strict=False
        )
    ]
    return EvalResult(
        task_metric=name,
        rows=len(rows),
        label_scoring=scoring,
        base=summary_metrics(rows, base, labels),
        finetuned=summary_metrics(rows, tuned, labels),
        delta=mean_or_nan(tuned_scores - base_scores),
        delta_ci95=paired_bootstrap_ci(base_scores, tuned_scores, seed),
        examples=examples,
        per_label_f1=f1_per_label(rows, tuned.answers(scoring), labels) if labels else {},
        base_scores=base_scores.tolist(),
        finetuned_scores=tuned_scores.tolist(),
        exact_scores=None if labels else exact_match_scores(rows, base, tuned),
    )


def exact_match_scores(rows: pd.DataFrame, base: Predictions, tuned: Predictions) -> tuple[list[float], list[float]]:
    """Per-row normalised exact match of both models' generations (the label metric, on free text)."""
    return (
        scores_for_metric("accuracy", rows, base.generations).tolist(),
        scores_for_metric("accuracy", rows, tuned.generations).tolist(),
    )
