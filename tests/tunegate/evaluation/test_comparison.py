"""Base vs fine-tuned: metric values on hand-made predictions, the delta with its interval, examples, and NaN
for no rows."""

import math

import numpy as np
import pandas as pd
import pytest

from tests.fixtures.training import LABELS
from tunegate.evaluation.comparison import compare_models, summary_metrics
from tunegate.evaluation.results import Predictions
from tunegate.evaluation.scoring import normalize_answer, paired_bootstrap_ci

ROWS = pd.DataFrame({"prompt": ["a", "b", "c", "d"], "completion": ["billing", "shipping", "billing", "returns"]})


def test_answers_are_normalized_before_matching():
    assert normalize_answer("  Billing.\nbecause the card was charged") == "billing"
    assert normalize_answer("'Shipping'!") == "shipping"
    assert normalize_answer("") == ""


def test_label_metrics_exact_values():
    predictions = Predictions(loss=math.log(2.0), generations=["billing", "returns", "Billing!", "returns"])
    metrics = summary_metrics(ROWS, predictions, LABELS)
    assert metrics["accuracy"] == 0.75
    # per label F1: billing 1.0, shipping 0.0, returns 2/3; the other three labels have no support → 0
    assert metrics["macro_f1"] == pytest.approx((1.0 + 0.0 + 2 / 3) / 6)
    assert metrics["perplexity"] == pytest.approx(2.0)


def test_free_text_metrics_exact_values():
    rows = pd.DataFrame({"prompt": ["x", "y"], "completion": ["the parcel ships today", "refund issued"]})
    metrics = summary_metrics(rows, Predictions(loss=1.0, generations=["the parcel ships today", "no refund"]), None)
    # ROUGE-L F1: 1.0 and LCS 1 word of 2 vs 2 → 0.5
    assert metrics["rouge_l"] == pytest.approx(0.75)
    assert metrics["exact_match"] == 0.5


def test_bootstrap_interval_is_seeded_and_brackets_the_delta():
    base = np.array([0, 0, 1, 0, 1, 0, 0, 0, 1, 0], dtype=float)
    tuned = np.array([1, 1, 1, 0, 1, 1, 1, 0, 1, 1], dtype=float)
    low, high = paired_bootstrap_ci(base, tuned, seed=0)
    assert (low, high) == paired_bootstrap_ci(base, tuned, seed=0)
    assert low <= 0.5 <= high and 0.0 < low and high <= 1.0


def test_compare_reports_delta_and_side_by_side_examples():
    base = Predictions(loss=2.0, generations=["x", "x", "x", "returns"])
    tuned = Predictions(loss=1.0, generations=["billing", "shipping", "billing", "returns"])
    result = compare_models(ROWS, base, tuned, LABELS)
    assert (result.task_metric, result.base["accuracy"], result.finetuned["accuracy"]) == ("accuracy", 0.25, 1.0)
    assert result.delta == 0.75
    assert result.examples[0] == {"prompt": "a", "expected": "billing", "base": "x", "finetuned": "billing"}
    assert result.per_label_f1 == {
        label: (1.0 if label in ("billing", "shipping", "returns") else 0.0) for label in LABELS
    }
    assert (result.base_scores, result.finetuned_scores) == ([0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0])
    assert "base_scores" not in result.model_dump()  # per-row scores stay out of the summary JSON


def test_no_rows_evaluate_to_nan_not_to_a_number():
    empty = ROWS.head(0)
    result = compare_models(
        empty, Predictions(loss=math.nan, generations=[]), Predictions(loss=math.nan, generations=[]), LABELS
    )
    assert result.rows == 0
    assert math.isnan(result.finetuned["accuracy"]) and math.isnan(result.delta)
    assert all(math.isnan(bound) for bound in result.delta_ci95)
    assert all(math.isnan(f1) for f1 in result.per_label_f1.values())
