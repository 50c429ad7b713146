"""Row accounting and the leakage stop, with their exact messages."""

from __future__ import annotations

import pytest

from tests.fixtures.data import stages
from tunegate.core.errors import AccountingError, LeakageError
from tunegate.data.accounting import RowCounts, balanced_row_counts, check_no_leakage


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
