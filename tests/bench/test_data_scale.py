import json

import numpy as np
import pandas as pd

from bench.data_scale import jaccard, quality, resolve_clusters, write_synthetic


def test_synthetic_rows_plant_the_stated_shares_and_name_their_originals(tmp_path):
    truth = write_synthetic(200, tmp_path / "rows.jsonl", seed=3)
    lines = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    kinds = pd.Series(truth["kind"]).value_counts().to_dict()
    assert len(lines) == 200
    assert kinds == {"original": 179, "exact": 10, "near": 10, "invalid": 1}
    for line, (kind, family) in enumerate(zip(truth["kind"], truth["family_line"], strict=True), start=1):
        original = lines[family - 1]
        if kind in ("original", "invalid"):
            assert family == line
        else:
            assert truth["kind"][family - 1] == "original"
        if kind == "exact":
            same = " ".join(lines[line - 1]["prompt"].lower().split()) == " ".join(original["prompt"].lower().split())
            assert same and lines[line - 1]["completion"].strip().lower() == original["completion"].lower()
        if kind == "near":
            assert (
                lines[line - 1] != original
                and jaccard(
                    lines[line - 1]["prompt"] + "\n" + lines[line - 1]["completion"],
                    original["prompt"] + "\n" + original["completion"],
                )
                >= 0.5
            )
    assert sum(not line["completion"] for line in lines) == 1


def test_quality_counts_found_pairs_and_removals_outside_the_family():
    # Lines 1-6: 1 original, 2 its near copy, 3 original, 4 its near copy, 5 and 6 unrelated originals.
    truth = {
        "family_line": np.array([1, 1, 3, 3, 5, 6]),
        "kind": np.array(["original", "near", "original", "near", "original", "original"], dtype=object),
    }
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau"
    texts = pd.Series(
        {1: words, 2: words + " upsilon", 3: "one two three", 4: "one two four", 5: "red green", 6: "blue sky"}
    )
    # Found: 2 with 1. Missed: 4 (below the threshold anyway). Wrongly removed: 6 as a copy of 5.
    cluster = resolve_clusters(pd.Index(range(1, 7)), np.array([2, 6]), np.array([1, 5]))
    matched = pd.Series([1, 5], index=[2, 6])
    assert quality(texts, cluster, matched, truth, 0.85) == {
        "planted_near_pairs": 1,
        "planted_below_threshold": 1,
        "recall": 1.0,
        "removed": 2,
        "precision": 0.5,
        "false_removals": 1,
    }


def test_clusters_follow_an_exact_copy_to_the_row_its_original_was_merged_into():
    # 3 was dropped as an exact copy of 2, and 2 as a near duplicate of 1: all three are one cluster.
    cluster = resolve_clusters(pd.Index([1, 2, 3, 4]), np.array([3, 2]), np.array([2, 1]))
    assert cluster.to_dict() == {1: 1, 2: 1, 3: 1, 4: 4}
