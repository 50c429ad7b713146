"""What the data stages return: a cached ingest or validation result is used only while the side files it names
(rejected rows, quarantine) are the ones it wrote, and every table it references counts too."""

from __future__ import annotations

import pandas as pd

from tunegate.core.fingerprint import fingerprint_file
from tunegate.core.refs import output_problems, write_table
from tunegate.data.results import IngestResult, ValidationResult


def test_an_ingest_result_names_its_rejected_file_when_it_changed_or_went_missing(tmp_path):
    canonical = write_table(pd.DataFrame({"prompt": ["a", "b"]}), tmp_path / "canonical.parquet")
    rejected = tmp_path / "rejected.jsonl"
    rejected.write_text('{"line": 3}\n', encoding="utf-8")
    recorded = fingerprint_file(rejected)
    result = IngestResult(
        canonical=canonical,
        rejected_path=str(rejected),
        rejected_fingerprint=recorded,
        rows_read=3,
        rejected=1,
        per_source={"a.csv": 3},
    )
    assert output_problems(result) == []
    rejected.write_text('{"line": 4}\n', encoding="utf-8")
    assert output_problems(result) == [
        f"{rejected} changed (sha256 {fingerprint_file(rejected)[:12]}, recorded {recorded[:12]})"
    ]
    rejected.unlink()
    (tmp_path / "canonical.parquet").unlink()
    assert output_problems(result) == [f"{rejected} is missing", f"{tmp_path / 'canonical.parquet'} is missing"]


def test_a_validation_result_names_its_quarantine_file(tmp_path):
    valid = write_table(pd.DataFrame({"prompt": ["a"]}), tmp_path / "valid.parquet")
    quarantine = tmp_path / "quarantine.jsonl"
    quarantine.write_text("", encoding="utf-8")
    result = ValidationResult(
        valid=valid,
        quarantine_path=str(quarantine),
        quarantine_fingerprint=fingerprint_file(quarantine),
        quarantined=0,
        rejected_at_ingest=0,
        failed_row_checks=0,
        failures_by_check={},
        success=True,
        failure_reason=None,
        data_docs=None,
    )
    assert output_problems(result) == []
    quarantine.unlink()
    assert output_problems(result) == [f"{quarantine} is missing"]
