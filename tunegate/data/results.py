"""What the data stages return: references (path + fingerprint + counts) to the tables they wrote, never the
data, and whether those files are intact (`file_problems`)."""

from __future__ import annotations

from pydantic import BaseModel

from tunegate.core.refs import TableRef, file_problems


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
