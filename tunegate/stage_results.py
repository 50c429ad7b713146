"""What each stage returns: typed results that carry references (path + fingerprint + counts) to the files the
stage wrote, never the data. They live here, below the stages, so the stages, the flows and the report share
them without importing each other; each result can say whether its outputs are intact (`output_problems`)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tunegate.refs import TableRef, file_problems


class SourceFingerprint(BaseModel):
    """A data source pinned to its content."""

    path: str
    fingerprint: str
    bytes: int


class IngestResult(BaseModel):
    """What ingest wrote."""

    canonical: TableRef
    rejected_path: str
    rejected_fingerprint: str
    rows_read: int
    rejected: int
    per_source: dict[str, int]

    def output_problems(self) -> list[str]:
        return file_problems(self.rejected_path, self.rejected_fingerprint)


class ValidationResult(BaseModel):
    """What validation found and wrote."""

    valid: TableRef
    quarantine_path: str
    quarantine_fingerprint: str
    quarantined: int
    rejected_at_ingest: int
    failed_row_checks: int
    failures_by_check: dict[str, int]
    success: bool
    failure_reason: str | None
    data_docs: str | None

    def output_problems(self) -> list[str]:
        return file_problems(self.quarantine_path, self.quarantine_fingerprint)


class DedupResult(BaseModel):
    """What deduplication kept and dropped."""

    kept: TableRef
    duplicates: TableRef
    exact_duplicates: int
    near_duplicates: int


class SplitResult(BaseModel):
    """The three splits and the leakage check."""

    train: TableRef
    val: TableRef
    test: TableRef
    test_train_near_duplicates: int
    groups_with_several_rows: int


class Predictions(BaseModel):
    """One model's outputs on the evaluation rows."""

    loss: float
    generations: list[str]


class EvalResult(BaseModel):
    """Base vs fine-tuned on the same rows; metrics are NaN when there were no rows (never promotable)."""

    task_metric: str
    rows: int
    base: dict[str, float]
    finetuned: dict[str, float]
    delta: float
    delta_ci95: tuple[float, float]
    examples: list[dict[str, str]]
    per_label_f1: dict[str, float] = {}
    # Per-row task-metric scores (row order), for the gate's paired intervals; kept out of the summary JSON.
    base_scores: list[float] = Field(default_factory=list, exclude=True)
    finetuned_scores: list[float] = Field(default_factory=list, exclude=True)


class EvaluationOutput(BaseModel):
    """The comparison, the exact rows it was measured on, and both models' per-row scores on them."""

    result: EvalResult
    rows: TableRef
    scores: TableRef
