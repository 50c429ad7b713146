"""What evaluation returns: the answers each label scoring scores, and the baseline's part of the summary JSON."""

from __future__ import annotations

import math

import pandas as pd

from tunegate.core.refs import write_table
from tunegate.evaluation.results import BaselineResult, Predictions


def test_likelihood_scoring_scores_the_likeliest_labels_and_falls_back_to_the_greedy_answers():
    labelled = Predictions(loss=0.5, generations=["billing", "the box"], label_choices=["billing", "shipping"])
    assert labelled.answers("likelihood") == ["billing", "shipping"]
    assert labelled.answers("generation") == ["billing", "the box"]
    free_text = Predictions(loss=0.5, generations=["a reply"])  # no label choices: free text
    assert free_text.answers("likelihood") == ["a reply"]


def test_the_baseline_summary_is_its_scores_and_interval_or_why_it_was_skipped(tmp_path):
    assert BaselineResult(skipped="free-text task: no labels").summary() == {
        "model": "tfidf-logreg",
        "skipped": "free-text task: no labels",
    }
    predictions = write_table(pd.DataFrame({"prediction": ["billing"]}), tmp_path / "predictions.parquet")
    scored = BaselineResult(
        train_rows=2400,
        rows=200,
        vocabulary_size=5000,
        accuracy=1.0,
        macro_f1=1.0,
        delta=-0.01,
        delta_ci95=(-0.025, 0.0),
        predictions=predictions,
        scores=[1.0] * 200,
    )
    assert scored.summary() == {
        "model": "tfidf-logreg",
        "train_rows": 2400,
        "rows": 200,
        "vocabulary_size": 5000,
        "accuracy": 1.0,
        "macro_f1": 1.0,
        "delta": -0.01,
        "delta_ci95": [-0.025, 0.0],
        "predictions": predictions.path,
    }  # the per-row scores stay out of the summary
    assert math.isnan(BaselineResult().accuracy)  # never scored: never a number the gate could pass
