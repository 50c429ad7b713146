"""What an evaluation returns: the base-vs-tuned comparison, and references to the rows and per-row scores it
was measured on."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, Field

from tunegate.core.refs import TableRef
from tunegate.evaluation.drift import DriftResult


class Predictions(BaseModel):
    """One model's outputs on the evaluation rows."""

    loss: float
    generations: list[str]
    # Labelled tasks: the label each row's prompt makes likeliest (`label_likelihood.py`); None otherwise.
    label_choices: list[str] | None = None

    def answers(self, label_scoring: str) -> list[str]:
        """What the task metric scores: the greedy generations, or the likeliest labels when scoring by likelihood."""
        return (
            self.label_choices if label_scoring == "likelihood" and self.label_choices is not None else self.generations
        )


class EvalResult(BaseModel):
    """Base vs fine-tuned on the same rows; metrics are NaN when there were no rows (never promotable)."""

    task_metric: str
    rows: int
    # Labelled tasks: generation (greedy answers) or likelihood (the likeliest label) is what task_metric, delta and
    # the gate score; the other is reported beside it (`likelihood_accuracy` / `accuracy` in base and finetuned).
    label_scoring: str = "generation"
    base: dict[str, float]
    finetuned: dict[str, float]
    delta: float
    delta_ci95: tuple[float, float]
    examples: list[dict[str, str]]
    per_label_f1: dict[str, float] = {}
    # Preference pairs: the 95% interval of (fine-tuned - base) in each metric of the generations against the chosen
    # replies (accuracy, or ROUGE-L and exact match), for the gate's guard; empty for SFT.
    generation_ci95: dict[str, tuple[float, float]] = {}
    # Per-row task-metric scores (row order), for the gate's paired intervals; kept out of the summary JSON.
    base_scores: list[float] = Field(default_factory=list, exclude=True)
    finetuned_scores: list[float] = Field(default_factory=list, exclude=True)
    # Drift from the base on the retention prompts (`drift.py`); None when eval.retention.rows is 0.
    drift: DriftResult | None = None
    # Free text: per-row exact match of (base, fine-tuned), beside ROUGE-L; kept out of the summary JSON.
    exact_scores: tuple[list[float], list[float]] | None = Field(default=None, exclude=True)


BASELINE_NAME = "tfidf-logreg"


class BaselineResult(BaseModel):
    """The baseline's scores on the evaluation rows and the tuned model's gain over it; `skipped` says why a task
    has none (no labels, turned off)."""

    model: str = Field(default=BASELINE_NAME, description="TF-IDF word 1-2-grams (sublinear tf) + logistic regression.")
    skipped: str | None = Field(default=None, description="Why no baseline was scored; None when it was.")
    train_rows: int = Field(default=0, description="Labelled train-split rows it was fitted on.")
    rows: int = Field(default=0, description="Evaluation rows it was scored on (the base's and tuned model's rows).")
    vocabulary_size: int = Field(default=0, description="Word 1-2-grams its TF-IDF learnt from the train prompts.")
    accuracy: float = Field(default=math.nan, description="Share of the evaluation rows whose label it predicted.")
    macro_f1: float = Field(default=math.nan, description="Macro-F1 over the task's labels.")
    delta: float = Field(default=math.nan, description="Tuned minus baseline in the task metric, same rows.")
    delta_ci95: tuple[float, float] = Field(
        default=(math.nan, math.nan), description="Paired bootstrap 95% interval of the delta."
    )
    predictions: TableRef | None = Field(
        default=None, description="Each evaluation row's prompt, expected label and the baseline's prediction."
    )
    vocabulary: TableRef | None = Field(default=None, description="The terms it learnt (`term`): train prompts only.")
    # Per-row 0/1 of the baseline's predictions (row order of the evaluation rows), for the gate's paired interval.
    scores: list[float] = Field(default_factory=list, exclude=True)

    def summary(self) -> dict[str, Any]:
        """The summary JSON's `eval.baseline`: the scores and the interval, or why there are none."""
        if self.skipped:
            return {"model": self.model, "skipped": self.skipped}
        numbers = self.model_dump(exclude={"skipped", "predictions", "vocabulary"})
        return {**numbers, "delta_ci95": list(self.delta_ci95), "predictions": self.predictions.path}


class EvaluationOutput(BaseModel):
    """The comparison, the exact rows it was measured on, both models' per-row scores on them and, once the
    baseline stage has run, the classical baseline on the same rows."""

    result: EvalResult
    rows: TableRef
    scores: TableRef
    baseline: BaselineResult | None = Field(
        default=None, description="The classical baseline on these rows (`tasks/baseline.py`); None: not scored."
    )

    def with_baseline(self, baseline: BaselineResult) -> EvaluationOutput:
        """This evaluation with the baseline scored on its rows (what the register stage and the reports read)."""
        return self.model_copy(update={"baseline": baseline})
