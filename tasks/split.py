"""Split: deterministic, label-stratified train/val/test split that keeps near-duplicate clusters together.

Reads the deduplicated rows; writes `<home>/data/split-<key>/{train,val,test}.parquet`. Rows are
grouped by near-duplicate clusters (a fresh MinHash draw, so pairs the dedup draw missed still stay
in one split), groups are assigned per stratum (the label for labelled rows, the record shape
otherwise) with a seed derived from the split seed and the stratum name, and afterwards every
val/test row is checked for a near duplicate in train; that count is reported and must be 0.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
from prefect import task

from tunegate.config.data import DedupConfig, SplitConfig
from tunegate.core.errors import InputError
from tunegate.core.fingerprint import fingerprint_value
from tunegate.core.refs import TableRef, write_table
from tunegate.data.near_duplicates import (
    ShingleSets,
    cluster_first_members,
    comparison_text,
    shingle_sets,
    similar_pairs,
)
from tunegate.data.results import SplitResult
from tunegate.runtime.caching import stage_cache_policy
from tunegate.runtime.stages import stage_directory

SPLITS = ("train", "val", "test")
# Independent MinHash draws for grouping and for the leakage check: offsets from the dedup seed.
GROUPING_SEED_OFFSET, LEAKAGE_SEED_OFFSET = 1, 2


@task(cache_policy=stage_cache_policy())
def split_rows(kept: TableRef, split: SplitConfig, dedup: DedupConfig, home: str) -> SplitResult:
    """Assign every kept row to exactly one split; check no val/test row has a near duplicate in train."""
    out_dir = stage_directory(home, "data/split", __file__, kept.fingerprint, fingerprint_value([split, dedup]))
    rows = kept.read()
    sets = shingle_sets(comparison_text(rows, dedup.fields), dedup.shingle_words)
    pairs = similar_pairs(sets, dedup.threshold, dedup.num_perm, dedup.seed + GROUPING_SEED_OFFSET)
    groups = cluster_first_members(pairs, len(rows))
    assignment = assign_groups(groups, strata(rows), split)
    check_every_split_has_rows(assignment, split)
    leaks = rows_with_near_duplicate_in_train(sets, assignment, dedup)
    written = {
        name: write_table(rows.loc[assignment == name].reset_index(drop=True), out_dir / f"{name}.parquet")
        for name in SPLITS
    }
    return SplitResult(
        **written,
        test_train_near_duplicates=leaks,
        groups_with_several_rows=int((np.bincount(groups, minlength=len(rows)) > 1).sum()),
    )


def check_every_split_has_rows(assignment: np.ndarray, split: SplitConfig) -> None:
    """A split with no rows is known here, before any training: a sweep without val rows or an evaluation without
    test rows cannot judge a model (a 0-test-row split trained the whole sweep, then registered "no evaluation")."""
    counts = {name: int((assignment == name).sum()) for name in SPLITS}
    empty = [name for name in SPLITS if counts[name] == 0]
    if not empty:
        return
    fractions = ", ".join(
        f"data.split.{name}_fraction={getattr(split, f'{name}_fraction')}" for name in empty if name != "train"
    )
    raise InputError(
        f"data.split leaves no {' and no '.join(empty)} rows ({', '.join(f'{k} {v}' for k, v in counts.items())} "
        f"of {len(assignment)} kept rows); raise {fractions or 'the share of train rows'}"
    )


def strata(rows: pd.DataFrame) -> np.ndarray:
    """Stratum per row: `label:<completion>` for labelled rows, `shape:<shape>` for the others."""
    labelled = rows["labelled"].to_numpy(dtype=bool)
    return np.where(labelled, "label:" + rows["completion"].astype(str), "shape:" + rows["shape"].astype(str))


def assign_groups(groups: np.ndarray, row_strata: np.ndarray, split: SplitConfig) -> np.ndarray:
    """Split name per row. Each group (by its first row's stratum) goes whole to one split.

    Within a stratum, groups are shuffled by a generator seeded with (seed, crc32(stratum)), so a new
    label elsewhere never reshuffles this one; groups fill test up to its quota, then val, the rest is train.
    """
    group_ids, row_group, group_sizes = np.unique(groups, return_inverse=True, return_counts=True)
    group_strata = row_strata[group_ids]
    group_split = np.full(len(group_ids), "train", dtype=object)
    for stratum in sorted(set(group_strata.tolist())):
        in_stratum = np.flatnonzero(group_strata == stratum)
        rng = np.random.default_rng([split.seed, zlib.crc32(stratum.encode())])
        order = in_stratum[rng.permutation(len(in_stratum))]
        rows_before = np.cumsum(group_sizes[order]) - group_sizes[order]
        total = group_sizes[in_stratum].sum()
        to_test = rows_before < round(total * split.test_fraction)
        test_rows = group_sizes[order][to_test].sum()
        to_val = ~to_test & (rows_before < test_rows + round(total * split.val_fraction))
        group_split[order[to_test]] = "test"
        group_split[order[to_val]] = "val"
    return group_split[row_group]


def rows_with_near_duplicate_in_train(sets: ShingleSets, assignment: np.ndarray, dedup: DedupConfig) -> int:
    """Count val/test rows that have a near duplicate (Jaccard ≥ threshold) among the train rows."""
    pairs = similar_pairs(
        sets, dedup.threshold, dedup.num_perm, dedup.seed + LEAKAGE_SEED_OFFSET, across_groups=assignment
    )
    left_split, right_split = assignment[pairs.left], assignment[pairs.right]
    held_out = np.concatenate(
        [
            pairs.right[(left_split == "train") & (right_split != "train")],
            pairs.left[(right_split == "train") & (left_split != "train")],
        ]
    )
    return len(np.unique(held_out))
