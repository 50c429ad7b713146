"""What the data flow hands on: every data stage's typed result, the row accounting and the stage log. The
finetune flow reads its splits and fingerprints from here; the summary JSON is rendered from it only at the
CLI and artifact boundary (`tunegate.reporting.data_report.data_summary`)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tunegate.core.fingerprint import combine
from tunegate.data.accounting import RowCounts
from tunegate.data.results import DedupResult, IngestResult, SourceFingerprint, SplitResult, ValidationResult


class PreparedData(BaseModel):
    """Validated, deduplicated, leakage-checked train/val/test Parquet, with how each stage got there."""

    pinned: list[SourceFingerprint]
    ingested: IngestResult
    validated: ValidationResult
    deduped: DedupResult
    split: SplitResult
    counts: RowCounts
    timings: dict[str, float] = Field(description="Seconds per stage, in run order.")
    cache_hits: list[str] = Field(description="Stages served from cache.")

    @property
    def source_fingerprint(self) -> str:
        """One fingerprint of the raw sources' bytes (what retraining compares)."""
        return combine(*(source.fingerprint for source in self.pinned))

    @property
    def data_fingerprint(self) -> str:
        """One fingerprint of the three splits (what studies and MLflow runs are keyed on)."""
        return combine(self.split.train.fingerprint, self.split.val.fingerprint, self.split.test.fingerprint)
