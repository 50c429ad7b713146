"""What an evaluation returns: the base-vs-tuned comparison, and references to the rows and per-row scores it
was measured on."""

from __future__ import annotations

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


class EvaluationOutput(BaseModel):
    """The comparison, the exact rows it was measured on, and both models' per-row scores on them."""

    result: EvalResult
    rows: TableRef
    scores: TableRef
