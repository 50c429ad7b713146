import pandas as pd

from tasks.deduplicate import deduplicate_rows
from tunegate.config.data import DedupConfig
from tunegate.core.refs import write_table

# 41 words; with the one-word completion appended the compared text has 42 words, 41 bigrams.
BASE = (
    "my order from last week has still not arrived and the tracking page shows no update at all since monday "
    "so I called the courier who told me the parcel is stuck in a depot near the airport waiting for customs"
)


def rows(texts):
    return pd.DataFrame(
        {
            "row_id": [f"f:{i + 1}" for i in range(len(texts))],
            "source": "f",
            "source_line": range(1, len(texts) + 1),
            "prompt": texts,
            "completion": "shipping",
            "rejected": None,
        }
    )


def test_exact_then_near_duplicates_keep_the_first_row_and_record_what_they_duplicate(tmp_path):
    texts = [
        BASE,  # f:1 kept
        "Completely different: how do I reset my password on the app?",  # f:2 kept
        "  " + BASE.upper() + "  ",  # f:3 case and whitespace only: exact
        BASE + "!",  # f:4 punctuation only: near (Jaccard 1.0)
        BASE.replace("monday", "tuesday"),  # f:5 one word changed (2 of 41 bigrams): near
        "Completely different: how do I reset my password on the app?",  # f:6 exact of f:2
    ]
    valid = write_table(rows(texts), tmp_path / "valid.parquet")
    result = deduplicate_rows.fn(valid, DedupConfig(threshold=0.85), str(tmp_path))
    assert (result.exact_duplicates, result.near_duplicates, result.kept.rows) == (2, 2, 2)
    assert result.kept.read()["row_id"].tolist() == ["f:1", "f:2"]
    dropped = result.duplicates.read()
    assert dropped[["row_id", "kind", "duplicate_of", "matched_row_id"]].values.tolist() == [
        ["f:3", "exact", "f:1", "f:1"],
        ["f:4", "near", "f:1", "f:1"],
        ["f:5", "near", "f:1", "f:1"],
        ["f:6", "exact", "f:2", "f:2"],
    ]
    # One changed word changes 2 of 41 bigrams: 39 shared of 43 distinct.
    assert dropped["similarity"].round(4).tolist() == [1.0, 1.0, round(39 / 43, 4), 1.0]


def test_threshold_decides_near_duplicates(tmp_path):
    texts = [BASE, BASE.replace("monday", "tuesday")]
    valid = write_table(rows(texts), tmp_path / "valid.parquet")
    assert deduplicate_rows.fn(valid, DedupConfig(threshold=0.95), str(tmp_path)).near_duplicates == 0
    assert deduplicate_rows.fn(valid, DedupConfig(threshold=0.9), str(tmp_path)).near_duplicates == 1


def test_chain_of_near_duplicates_drops_to_the_first_row_and_names_the_direct_match(tmp_path):
    second = BASE.replace("customs", "clearance")  # J(first, second) = 39/43
    third = second.replace("waiting", "queueing")  # J(second, third) = 39/43, J(first, third) = 37/45 < 0.85
    valid = write_table(rows([BASE, second, third]), tmp_path / "valid.parquet")
    dropped = deduplicate_rows.fn(valid, DedupConfig(threshold=0.85), str(tmp_path)).duplicates.read()
    assert dropped[["row_id", "duplicate_of", "matched_row_id"]].values.tolist() == [
        ["f:2", "f:1", "f:1"],
        ["f:3", "f:1", "f:2"],
    ]


def test_preference_pairs_are_duplicates_only_when_both_replies_match(tmp_path):
    # Compared on prompt + chosen + rejected: with a short prompt, another rejected reply is another pair.
    pairs = rows(["Where is my parcel?"] * 3).assign(
        completion="It left our depot on Monday and arrives tomorrow.",
        rejected=["No idea, ask the courier.", "no   IDEA, ask the COURIER.", "Parcels are not our problem at all."],
    )
    result = deduplicate_rows.fn(write_table(pairs, tmp_path / "pairs.parquet"), DedupConfig(), str(tmp_path))
    assert result.kept.read()["row_id"].tolist() == ["f:1", "f:3"]
    assert result.duplicates.read()[["row_id", "kind", "duplicate_of"]].values.tolist() == [["f:2", "exact", "f:1"]]
