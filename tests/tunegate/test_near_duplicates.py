import numpy as np

from tunegate.near_duplicates import (
    SimilarPairs,
    candidate_pairs,
    cluster_first_members,
    exact_jaccard,
    lsh_band_shape,
    minhash_signatures,
    shingle_sets,
    similar_pairs,
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
