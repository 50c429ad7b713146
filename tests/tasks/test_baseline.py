"""The baseline stage on demo tickets: fitted on the train split only, scored on exactly the evaluation's rows."""

import pandas as pd

from tasks.baseline import score_baseline
from tests.fixtures.registry import evaluation
from tests.fixtures.training import LABELS, ticket_rows
from tunegate.config.registry import BaselineSettings
from tunegate.core.refs import write_table
from tunegate.evaluation.results import EvaluationOutput

TEST_ONLY_WORD = "zanzibarquux"


def settings(home, **changes) -> BaselineSettings:
    return BaselineSettings(
        **{"labels": LABELS, "enabled": True, "preference_pairs": False, "seed": 0, "home": str(home), **changes}
    )


def evaluated_on(rows: pd.DataFrame, tuned_right: int, folder) -> EvaluationOutput:
    tuned = [1.0] * tuned_right + [0.0] * (len(rows) - tuned_right)
    scores = pd.DataFrame({"base": [0.0] * len(rows), "finetuned": tuned})
    return EvaluationOutput(
        result=evaluation(scores["base"].to_numpy(), scores["finetuned"].to_numpy()),
        rows=write_table(rows, folder / "eval_rows.parquet"),
        scores=write_table(scores, folder / "row_scores.parquet"),
    )


def test_the_baseline_never_sees_a_test_prompt_and_scores_the_evaluation_rows(tmp_path):
    train = ticket_rows(300).assign(labelled=True)
    test = ticket_rows(40, skip=300).assign(labelled=True).reset_index(drop=True)
    test.loc[0, "prompt"] = f"{test.loc[0, 'prompt']} {TEST_ONLY_WORD}"
    evaluated = evaluated_on(test, tuned_right=10, folder=tmp_path)
    result = score_baseline.fn(write_table(train, tmp_path / "train.parquet"), evaluated, settings(tmp_path))
    terms = set(result.vocabulary.read()["term"])
    assert TEST_ONLY_WORD not in terms and "parcel" in terms and len(terms) == result.vocabulary_size
    assert (result.train_rows, result.rows) == (300, 40)
    predictions = result.predictions.read()
    assert predictions["prompt"].tolist() == test["prompt"].tolist()
    right = (predictions["predicted"] == predictions["expected"]).to_numpy(dtype=float)
    assert result.scores == right.tolist() and result.accuracy == right.mean()
    # The demo tickets are keyword-rich: a classifier fitted on 300 of them gets most of the next 40 right.
    assert result.accuracy >= 0.75
    assert result.delta == 10 / 40 - right.mean()


def test_tasks_without_labels_get_the_reason_instead(tmp_path):
    train = write_table(ticket_rows(20).assign(labelled=True), tmp_path / "train.parquet")
    evaluated = evaluated_on(ticket_rows(4, skip=20).assign(labelled=True), tuned_right=2, folder=tmp_path)
    skipped = {
        "free text": settings(tmp_path, labels=None),
        "dpo": settings(tmp_path, preference_pairs=True),
        "off": settings(tmp_path, enabled=False),
    }
    assert {name: score_baseline.fn(train, evaluated, chosen).skipped for name, chosen in skipped.items()} == {
        "free text": "a free-text task has no labels to classify (task.labels is unset)",
        "dpo": "preference pairs have no labels to classify",
        "off": "turned off (eval.baseline: false)",
    }
