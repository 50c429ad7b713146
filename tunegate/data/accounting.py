"""Row accounting: every row read ends in exactly one place (a split, quarantine, or a duplicate)."""

from __future__ import annotations

from pydantic import BaseModel

from tunegate.core.errors import AccountingError, LeakageError
from tunegate.data.results import DedupResult, IngestResult, SplitResult, ValidationResult


class RowCounts(BaseModel):
    """Where the rows went; `rows_read` equals the sum of the other six."""

    rows_read: int
    quarantined: int
    exact_duplicates: int
    near_duplicates: int
    train: int
    val: int
    test: int


def balanced_row_counts(
    ingested: IngestResult, validated: ValidationResult, deduped: DedupResult, split: SplitResult
) -> RowCounts:
    """Check each stage's in = out and the end-to-end balance; a mismatch is a pipeline bug."""
    stage_balances = {
        "ingest": (ingested.rows_read, ingested.canonical.rows + ingested.rejected),
        "validate": (ingested.canonical.rows, validated.valid.rows + validated.failed_row_checks),
        "dedup": (validated.valid.rows, deduped.kept.rows + deduped.exact_duplicates + deduped.near_duplicates),
        "split": (deduped.kept.rows, split.train.rows + split.val.rows + split.test.rows),
    }
    for stage, (rows_in, rows_out) in stage_balances.items():
        if rows_in != rows_out:
            raise AccountingError(f"{stage}: {rows_in} rows in but {rows_out} accounted for (a pipeline bug)")
    counts = RowCounts(
        rows_read=ingested.rows_read,
        quarantined=validated.quarantined,
        exact_duplicates=deduped.exact_duplicates,
        near_duplicates=deduped.near_duplicates,
        train=split.train.rows,
        val=split.val.rows,
        test=split.test.rows,
    )
    parts = counts.model_dump(exclude={"rows_read"})
    if counts.rows_read != sum(parts.values()):
        raise AccountingError(f"rows read {counts.rows_read} != {parts} (sum {sum(parts.values())}): a pipeline bug")
    return counts


def check_no_leakage(split: SplitResult) -> None:
    """Val or test rows with a near duplicate in train would score memorisation as skill: stop the run."""
    if split.test_train_near_duplicates:
        raise LeakageError(f"{split.test_train_near_duplicates} val/test rows have a near duplicate in train")
