"""What the data flow hands on: one fingerprint of the raw sources (what retraining compares) and one of the three
splits (what studies and MLflow runs are keyed on), each order-sensitive."""

from __future__ import annotations

import hashlib

import pandas as pd

from tunegate.core.refs import write_table
from tunegate.data.prepared import PreparedData
from tunegate.data.results import SourceFingerprint, SplitResult


def sha256_of_lines(*lines: str) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def prepared(tmp_path, splits: dict[str, list[str]], sources: dict[str, str]) -> PreparedData:
    """Only the parts the fingerprints read (the other stage results are not needed for them)."""
    tables = {
        name: write_table(pd.DataFrame({"prompt": prompts}), tmp_path / f"{name}.parquet")
        for name, prompts in splits.items()
    }
    split = SplitResult(**tables, test_train_near_duplicates=0, groups_with_several_rows=0)
    pinned = [SourceFingerprint(path=path, fingerprint=digest, bytes=10) for path, digest in sources.items()]
    return PreparedData.model_construct(pinned=pinned, split=split)


def test_the_data_fingerprint_is_the_three_splits_in_order_and_the_source_one_the_sources_in_order(tmp_path):
    data = prepared(tmp_path, {"train": ["a", "b"], "val": ["c"], "test": ["d"]}, {"x.csv": "f1", "y.jsonl": "f2"})
    split = data.split
    assert data.data_fingerprint == sha256_of_lines(
        split.train.fingerprint, split.val.fingerprint, split.test.fingerprint
    )
    assert data.source_fingerprint == sha256_of_lines("f1", "f2")
    # A row that moves from val to test is a new split, though the rows are the same: the study is a new one.
    moved = prepared(
        tmp_path / "moved", {"train": ["a", "b"], "val": ["d"], "test": ["c"]}, {"x.csv": "f1", "y.jsonl": "f2"}
    )
    assert moved.data_fingerprint != data.data_fingerprint
    reordered = prepared(
        tmp_path / "reordered", {"train": ["a", "b"], "val": ["c"], "test": ["d"]}, {"y.jsonl": "f2", "x.csv": "f1"}
    )
    assert (reordered.data_fingerprint, reordered.source_fingerprint) == (
        data.data_fingerprint,
        sha256_of_lines("f2", "f1"),
    )
