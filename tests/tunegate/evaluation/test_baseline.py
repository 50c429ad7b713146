"""The classical baseline's arithmetic on hand-made rows: what it learns, what it predicts, how it is scored."""

import math

import numpy as np
import pandas as pd

from tunegate.evaluation.baseline import (
    baseline_result,
    fit_baseline,
    labelled_pairs,
    predicted_labels,
    vocabulary,
)
from tunegate.evaluation.results import BaselineResult

PROMPTS = ["refund my invoice", "invoice charged twice", "parcel never arrived", "parcel is late"]
LABELS = ["billing", "billing", "shipping", "shipping"]


def test_it_learns_word_unigrams_and_bigrams_of_the_prompts_it_is_given():
    fitted = fit_baseline(PROMPTS, LABELS, seed=0)
    assert vocabulary(fitted) == {
        *("refund", "my", "invoice", "charged", "twice", "parcel", "never", "arrived", "is", "late"),
        *("refund my", "my invoice", "invoice charged", "charged twice", "parcel never", "never arrived"),
        *("parcel is", "is late"),
    }
    rows = pd.DataFrame({"prompt": ["my invoice is wrong", "where is my parcel", "zzz"], "completion": ["x"] * 3})
    assert predicted_labels(fitted, rows)[:2] == ["billing", "shipping"]


def test_one_label_in_train_predicts_that_label():
    fitted = fit_baseline(PROMPTS[:2], LABELS[:2], seed=0)
    rows = pd.DataFrame({"prompt": ["parcel never arrived"], "completion": ["shipping"]})
    assert predicted_labels(fitted, rows) == ["billing"]


def test_only_labelled_rows_are_fitted_and_labels_are_normalised():
    rows = pd.DataFrame(
        {"prompt": ["a", "b", "c"], "completion": ["Billing.", "free text answer", " shipping"], "labelled": [1, 0, 1]}
    )
    assert labelled_pairs(rows) == (["a", "c"], ["billing", "shipping"])


def test_the_delta_is_tuned_minus_baseline_on_the_same_rows_with_a_paired_interval():
    rows = pd.DataFrame({"prompt": ["p"] * 4, "completion": ["billing", "billing", "shipping", "shipping"]})
    result = baseline_result(
        ["billing", "shipping", "shipping", "shipping"], rows, ["billing", "shipping"], np.ones(4), seed=0
    )
    assert (result.rows, result.accuracy, result.delta, result.scores) == (4, 0.75, 0.25, [1.0, 0.0, 1.0, 1.0])
    assert math.isclose(result.macro_f1, (2 / 3 + 0.8) / 2)
    low, high = result.delta_ci95
    assert 0.0 <= low <= 0.25 <= high <= 1.0


def test_no_rows_scores_nan_and_a_skipped_baseline_summarises_to_its_reason():
    empty = pd.DataFrame({"prompt": [], "completion": []})
    result = baseline_result([], empty, ["billing"], np.array([]), seed=0)
    assert result.rows == 0 and math.isnan(result.accuracy) and math.isnan(result.delta)
    assert BaselineResult(skipped="turned off").summary() == {"model": "tfidf-logreg", "skipped": "turned off"}
