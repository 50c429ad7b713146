"""Row accounting and the leakage stop, with their exact messages."""

from __future__ import annotations

import pytest

from tunegate.accounting import RowCounts, balanced_row_counts, check_no_leakage
from tunegate.errors import AccountingError, LeakageError
from tunegate.refs import TableRef
from tunegate.stage_results import DedupResult, IngestResult, SplitResult, ValidationResult


def table(rows: int) -> TableRef:
    return TableRef(path=f"/nowhere/{rows}.parquet", fingerprint="0" * 64, rows=rows)


def stages(read: int = 100, canonical: int = 95, valid: int = 90, kept: int = 80, train: int = 64):
    ingested = IngestResult(
        canonical=table(canonical),
        rejected_path="/nowhere/rejected.jsonl",
        rejected_fingerprint="0" * 64,
        rows_read=read,
        rejected=5,
        per_source={"a.jsonl": read},
    )
    validated = ValidationResult(
        valid=table(valid),
        quarantine_path="/nowhere/quarantine.jsonl",
        quarantine_fingerprint="0" * 64,
        quarantined=10,
        rejected_at_ingest=5,
        failed_row_checks=5,
        failures_by_check={"length": 5},
        success=True,
        failure_reason=None,
        data_docs=None,
    )
    deduped = DedupResult(kept=table(kept), duplicates=table(10), exact_duplicates=6, near_duplicates=4)
    split = SplitResult(
        train=table(train), val=table(8), test=table(8), test_train_near_duplicates=0, groups_with_several_rows=0
    )
    return ingested, validated, deduped, split


def test_balanced_counts_say_where_every_row_went():
    assert balanced_row_counts(*stages()) == RowCounts(
        rows_read=100, quarantined=10, exact_duplicates=6, near_duplicates=4, train=64, val=8, test=8
    )


def test_a_stage_that_loses_rows_is_named_with_its_counts():
    with pytest.raises(AccountingError) as raised:
        balanced_row_counts(*stages(kept=79))
    assert str(raised.value) == "dedup: 90 rows in but 89 accounted for (a pipeline bug)"


def test_rows_lost_between_stages_fail_the_end_to_end_balance():
    # Each stage balances on its own, but quarantine counts 10 while validation dropped 5 + ingest 5 = 10 rows;
    # count one more quarantined row than there were and only the end-to-end sum can see it.
    ingested, validated, deduped, split = stages()
    validated = validated.model_copy(update={"quarantined": 11})
    with pytest.raises(AccountingError) as raised:
        balanced_row_counts(ingested, validated, deduped, split)
    assert str(raised.value) == (
        "rows read 100 != {'quarantined': 11, 'exact_duplicates': 6, 'near_duplicates': 4, 'train': 64, 'val': 8, "
        "'test': 8} (sum 101): a pipeline bug"
    )


def test_val_or_test_rows_with_a_near_duplicate_in_train_stop_the_run():
    *_, split = stages()
    check_no_leakage(split)  # none: passes
    with pytest.raises(LeakageError) as raised:
        check_no_leakage(split.model_copy(update={"test_train_near_duplicates": 3}))
    assert str(raised.value) == "3 val/test rows have a near duplicate in train"
