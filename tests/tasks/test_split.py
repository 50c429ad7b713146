import numpy as np
import pandas as pd

from tasks.split import assign_groups, split_rows
from tunegate.config.data import DedupConfig, SplitConfig
from tunegate.core.refs import write_table


def kept_rows(count_per_label: dict[str, int]) -> pd.DataFrame:
    labels = [label for label, count in count_per_label.items() for _ in range(count)]
    return pd.DataFrame(
        {
            "row_id": [f"r:{i}" for i in range(len(labels))],
            "shape": "prompt_completion",
            "labelled": True,
            "prompt": [f"ticket {i} word{i} text{i * 7} body{i * 13}" for i in range(len(labels))],
            "completion": labels,
            "rejected": None,  # a canonical column: preference pairs only
        }
    )


def test_split_is_stratified_deterministic_and_complete(tmp_path):
    kept = write_table(kept_rows({"billing": 50, "shipping": 30}), tmp_path / "kept.parquet")
    config = SplitConfig(val_fraction=0.1, test_fraction=0.2, seed=3)
    first = split_rows.fn(kept, config, DedupConfig(), str(tmp_path))
    again = split_rows.fn(kept, config, DedupConfig(), str(tmp_path))
    counts = {
        name: getattr(first, name).read()["completion"].value_counts().to_dict() for name in ("train", "val", "test")
    }
    assert counts == {
        "train": {"billing": 35, "shipping": 21},
        "val": {"billing": 5, "shipping": 3},
        "test": {"billing": 10, "shipping": 6},
    }
    assert first.test.fingerprint == again.test.fingerprint
    assert first.test_train_near_duplicates == 0
    other_seed = split_rows.fn(
        kept, SplitConfig(val_fraction=0.1, test_fraction=0.2, seed=4), DedupConfig(), str(tmp_path)
    )
    assert set(other_seed.test.read()["row_id"]) != set(first.test.read()["row_id"])


def test_groups_stay_whole_in_one_split():
    groups = np.array([0, 0, 0, 3, 4, 5, 6, 6, 8, 9])
    strata = np.array(["a"] * 10)
    assignment = assign_groups(groups, strata, SplitConfig(val_fraction=0.2, test_fraction=0.3, seed=1))
    for group in set(groups.tolist()):
        assert len(set(assignment[groups == group])) == 1
    assert sorted(assignment.tolist()).count("test") >= 3


def test_near_duplicates_in_kept_rows_are_grouped_so_nothing_leaks(tmp_path):
    rows = kept_rows({"billing": 40})
    sentence = (
        "the parcel never arrived and the courier says it was delivered to my neighbour on friday but nobody "
        "on my street has seen it and the photo in the app shows a door that is not mine at all"
    )  # 38 words: one differing last word keeps Jaccard at 37/41 >= 0.85
    rows.loc[:9, "prompt"] = [f"{sentence} ref{i}" for i in range(10)]  # a ten-row near-duplicate cluster
    kept = write_table(rows, tmp_path / "kept.parquet")
    result = split_rows.fn(kept, SplitConfig(val_fraction=0.2, test_fraction=0.2, seed=0), DedupConfig(), str(tmp_path))
    assert result.groups_with_several_rows == 1
    assert result.test_train_near_duplicates == 0
    where = {row_id: name for name in ("train", "val", "test") for row_id in getattr(result, name).read()["row_id"]}
    assert len({where[f"r:{i}"] for i in range(10)}) == 1
