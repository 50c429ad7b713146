"""The `data:` section: a split must leave train rows, and sources keep their own column maps and labelled flags."""

from __future__ import annotations

import pytest

from tests.conftest import REPO
from tunegate.config.loading import load_config
from tunegate.core.errors import InputError

DEMO_CONFIG = REPO / "deployments" / "demo.yaml"


@pytest.mark.parametrize(("val", "test", "total"), [("0.5", "0.5", "1"), ("0.7", "0.4", "1.1")])
def test_a_split_that_leaves_no_train_rows_is_refused_at_load(val, test, total):
    with pytest.raises(InputError) as raised:
        load_config(DEMO_CONFIG, [f"data.split.val_fraction={val}", f"data.split.test_fraction={test}"])
    assert str(raised.value).endswith(
        f"data.split: val_fraction + test_fraction = {total} leaves no train rows (must be below 1)"
    )


def test_each_source_keeps_its_columns_and_labelled_flag():
    sources = load_config(DEMO_CONFIG).data.sources
    assert [(s.path, s.format, s.shape, s.columns, s.labelled) for s in sources] == [
        ("demo/data/tickets.csv", "auto", "auto", {"text": "prompt", "category": "completion"}, True),
        ("demo/data/replies.jsonl", "auto", "auto", {}, False),
    ]
