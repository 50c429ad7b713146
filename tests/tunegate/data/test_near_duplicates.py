import numpy as np

from tunegate.data import near_duplicates
from tunegate.data.near_duplicates import (
    SimilarPairs,
    candidate_pairs,
    cluster_first_members,
    exact_jaccard,
    lsh_band_shape,
    minhash_signatures,
    row_blocks,
    shingle_sets,
    similar_pairs,
    word_token_ids,
)

TEXTS = [
    "the cat sat on the mat",  # 5 bigrams
    "The cat sat on a mat!",  # shares 3 with row 0: the cat, cat sat, sat on
    "hello",  # shorter than a shingle: one shingle of its only word
    "",  # no words: no shingles
    "HELLO.",  # same words as row 2
]


def test_shingle_sets_are_word_bigrams_per_row_without_punctuation_or_case():
    sets = shingle_sets(TEXTS, 2)
    assert sets.sizes().tolist() == [5, 5, 1, 0, 1]
    row2 = sets.ids[sets.offsets[2] : sets.offsets[3]]
    row4 = sets.ids[sets.offsets[4] : sets.offsets[5]]
    assert row2.tolist() == row4.tolist()


def test_exact_jaccard_values():
    sets = shingle_sets(TEXTS, 2)
    similarity = exact_jaccard(sets, np.array([0, 2, 0, 3]), np.array([1, 4, 2, 3]))
    assert similarity.round(4).tolist() == [round(3 / 7, 4), 1.0, 0.0, 0.0]


def test_unigram_shingles_give_set_of_words_jaccard():
    sets = shingle_sets(["a b c d", "a b c e"], 1)
    assert exact_jaccard(sets, np.array([0]), np.array([1])).tolist() == [3 / 5]


def test_signatures_agree_exactly_for_identical_sets_and_mark_empty_rows():
    signatures = minhash_signatures(shingle_sets(TEXTS, 2), num_perm=32, seed=7)
    assert signatures.shape == (5, 32)
    assert (signatures[2] == signatures[4]).all()
    assert (signatures[3] == np.iinfo(np.uint32).max).all()
    assert (signatures[0] != signatures[1]).any()


def test_band_shape_puts_the_s_curve_near_the_threshold():
    bands, rows = lsh_band_shape(0.85, 128)
    assert bands * rows <= 128
    candidate_probability = lambda s: 1 - (1 - s**rows) ** bands  # noqa: E731
    assert candidate_probability(0.85) > 0.98
    assert candidate_probability(0.5) < 0.2


def test_candidate_pairs_from_shared_band_keys():
    signatures = np.array([[1, 2, 3, 4], [1, 2, 9, 9], [5, 6, 3, 4], [7, 7, 7, 7]], dtype=np.uint32)
    pairs = candidate_pairs(signatures, bands=2, rows_per_band=2)
    assert pairs.tolist() == [[0, 1], [0, 2]]


def test_similar_pairs_only_across_groups():
    texts = ["one two three four five", "one two three four five", "one two three four five"]
    sets = shingle_sets(texts, 2)
    everything = similar_pairs(sets, 0.85, 64, 1)
    assert list(zip(everything.left.tolist(), everything.right.tolist(), strict=False)) == [(0, 1), (0, 2), (1, 2)]
    across = similar_pairs(sets, 0.85, 64, 1, across_groups=np.array(["a", "a", "b"]))
    assert list(zip(across.left.tolist(), across.right.tolist(), strict=False)) == [(0, 2), (1, 2)]


def test_clusters_take_their_lowest_row_and_are_transitive():
    pairs = SimilarPairs(left=np.array([1, 3, 4]), right=np.array([3, 5, 6]), jaccard=np.ones(3))
    assert cluster_first_members(pairs, 7).tolist() == [0, 1, 2, 1, 4, 1, 4]


def test_words_are_letters_digits_and_underscore_runs_in_any_script():
    tokens, rows = word_token_ids(["Café au-lait, naïve!  東京 tower_1", "", "  CAFÉ\u00a0 "])
    assert rows.tolist() == [0, 0, 0, 0, 0, 0, 2]
    assert tokens[-1] == tokens[0]  # café, whatever its case and the spaces around it
    assert len(set(tokens[:6].tolist())) == 6  # café au lait naïve 東京 tower_1


def test_repeated_shingles_count_once_in_the_exact_jaccard():
    sets = shingle_sets(["a b a b a b", "a b"], 2)
    assert sets.sizes().tolist() == [5, 1]  # a-b, b-a, a-b, b-a, a-b: kept in text order
    assert exact_jaccard(sets, np.array([0]), np.array([1])).tolist() == [0.5]  # {ab, ba} vs {ab}


def test_signatures_do_not_depend_on_the_block_size(monkeypatch):
    texts = ["", "one two three", "", "", "four five six seven eight", "one", "", "nine ten eleven twelve"]
    sets = shingle_sets(texts, 2)
    whole = minhash_signatures(sets, num_perm=16, seed=3)
    monkeypatch.setattr(near_duplicates, "MINHASH_BLOCK_IDS", 2)
    assert len(row_blocks(sets.offsets, 2)) > 3
    assert (minhash_signatures(sets, num_perm=16, seed=3) == whole).all()
    assert (whole[[0, 2, 3, 6]] == np.iinfo(np.uint32).max).all()


def test_row_blocks_cover_every_row_once():
    offsets = np.array([0, 0, 5, 5, 6, 20, 20])  # six rows; rows 0, 2 and 5 are empty
    # A block starts at the row holding id 0, 5, 10, 15 (rows 1, 3, 4, 4): row 4's 14 ids stay in one block.
    assert row_blocks(offsets, 5) == [(0, 1), (1, 3), (3, 4), (4, 6)]
    assert row_blocks(np.array([0]), 5) == []
    assert row_blocks(np.array([0, 0, 0]), 5) == [(0, 2)]
