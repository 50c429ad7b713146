"""Near-duplicate detection: word shingles → vectorized MinHash → LSH banding → exact Jaccard check.

Everything is array code (pyarrow kernels for tokenizing, numpy for hashing, scipy for clustering);
no Python loop runs per row. LSH only proposes candidate pairs; each candidate is confirmed with the
exact Jaccard similarity of the two shingle sets, so a pair is reported iff its Jaccard ≥ threshold
and LSH proposed it (recall ~0.99 at the threshold with the band shape chosen below).

    >>> sets = shingle_sets(["the cat sat on the mat", "the cat sat on a mat", "unrelated words here"], 2)
    >>> pairs = similar_pairs(sets, threshold=0.3, num_perm=64, seed=1)
    >>> [(int(a), int(b), round(float(j), 2)) for a, b, j in zip(pairs.left, pairs.right, pairs.jaccard)]
    [(0, 1, 0.43)]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# Odd 64-bit multiplier mixing consecutive token ids into one shingle id (wraps mod 2**64).
SHINGLE_MIX = np.uint64(0x9E3779B97F4A7C15)
# Buckets larger than this are paired as a chain instead of all pairs: a 10k-row bucket of
# templated texts would otherwise yield 50M candidate pairs.
MAX_BUCKET_ALL_PAIRS = 64
# LSH must propose at least 99% of the pairs sitting exactly at the threshold (more above it).
MIN_RECALL_AT_THRESHOLD = 0.99
# Candidates whose MinHash estimate falls this far below the threshold skip the exact check. With 128
# permutations the estimate's standard deviation at J = 0.85 is sqrt(0.85 * 0.15 / 128) = 0.032, so a
# true pair is dropped with probability < 0.1%; on templated data this removes >99% of the candidates.
ESTIMATE_MARGIN = 0.1
# Pairs are verified in blocks so the gathered shingle arrays stay around 100 MB at 1M rows; a block's
# pair index fits the 18 bits above PAIR_KEY_SHIFT (2**18 = 262,144 > 200,000).
VERIFY_BLOCK_PAIRS = 200_000
PAIR_KEY_SHIFT = 46


@dataclass
class ShingleSets:
    """Each row's set of shingle ids: sorted and unique within a row, rows laid end to end."""

    ids: np.ndarray  # uint64, all rows' shingles
    offsets: np.ndarray  # int64, row r's shingles are ids[offsets[r]:offsets[r + 1]]

    @property
    def rows(self) -> int:
        return len(self.offsets) - 1

    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)


@dataclass
class SimilarPairs:
    """Row pairs (left < right) whose exact Jaccard similarity reached the threshold."""

    left: np.ndarray
    right: np.ndarray
    jaccard: np.ndarray


def word_token_ids(texts: list[str] | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Lower-cased word tokens (punctuation dropped) as integer ids, and the row each token came from."""
    array = pa.array(texts, type=pa.large_string()) if not isinstance(texts, pa.Array) else texts
    words = pc.split_pattern_regex(pc.utf8_lower(array), pattern=r"[^\w]+")
    rows = pc.list_parent_indices(words).to_numpy()
    flat = pc.list_flatten(words)
    non_empty = pc.greater(pc.utf8_length(flat), 0).to_numpy(zero_copy_only=False)
    # Dictionary encoding gives each distinct word one id; ids only need to agree within one call.
    token_ids = pc.dictionary_encode(flat.filter(pa.array(non_empty))).indices.to_numpy().astype(np.uint64)
    return token_ids, rows[non_empty].astype(np.int64)


def shingle_sets(texts: list[str] | pa.Array, shingle_words: int) -> ShingleSets:
    """Sets of `shingle_words`-word shingles per text; a text shorter than that is one shingle."""
    tokens, rows = word_token_ids(texts)
    row_count = len(texts)
    tokens_per_row = np.bincount(rows, minlength=row_count)
    row_start = np.concatenate([[0], np.cumsum(tokens_per_row)[:-1]])
    position = np.arange(len(tokens))
    combined, length = tokens.copy(), np.ones(len(tokens), dtype=np.int64)
    for step in range(1, shingle_words):
        ahead = np.minimum(position + step, max(len(tokens) - 1, 0))
        same_row = (position + step < len(tokens)) & (rows[ahead] == rows)
        combined = np.where(same_row, combined * SHINGLE_MIX + tokens[ahead] + np.uint64(step), combined)
        length += same_row
    full = length == shingle_words
    whole_short_row = (position == row_start[rows]) & (tokens_per_row[rows] < shingle_words)
    keep = full | whole_short_row
    # Multiplying by an odd constant is a bijection mod 2**64 that spreads small ids into the high bits.
    return group_unique(combined[keep] * SHINGLE_MIX, rows[keep], row_count)


def group_unique(ids: np.ndarray, rows: np.ndarray, row_count: int) -> ShingleSets:
    order = np.lexsort((ids, rows))
    ids, rows = ids[order], rows[order]
    first = np.ones(len(ids), dtype=bool)
    first[1:] = (ids[1:] != ids[:-1]) | (rows[1:] != rows[:-1])
    ids, rows = ids[first], rows[first]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=row_count))]).astype(np.int64)
    return ShingleSets(ids=ids, offsets=offsets)


def minhash_signatures(sets: ShingleSets, num_perm: int, seed: int) -> np.ndarray:
    """(rows, num_perm) uint32 MinHash signatures via multiply-shift hashing; empty rows get all-max."""
    rng = np.random.default_rng(seed)
    multipliers = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    increments = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    signatures = np.full((sets.rows, num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    present = np.flatnonzero(sets.sizes() > 0)
    if len(present) == 0:
        return signatures
    starts = sets.offsets[present]
    for column in range(num_perm):
        hashed = ((sets.ids * multipliers[column] + increments[column]) >> np.uint64(32)).astype(np.uint32)
        signatures[present, column] = np.minimum.reduceat(hashed, starts)
    return signatures


def lsh_band_shape(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band): the fewest false candidates among shapes that find a pair at the threshold
    with probability >= MIN_RECALL_AT_THRESHOLD.

    A pair with Jaccard s becomes a candidate with probability 1 - (1 - s**r)**b. False candidates only
    cost an exact Jaccard check; a missed pair is a duplicate left in the data, so recall comes first.
    """
    grid = np.linspace(0.0, threshold, 101)
    shapes = [(num_perm // rows, rows) for rows in range(1, num_perm + 1)]
    recall = np.array([1.0 - (1.0 - threshold**rows) ** bands for bands, rows in shapes])
    false_candidates = np.array([np.trapezoid(1.0 - (1.0 - grid**rows) ** bands, grid) for bands, rows in shapes])
    eligible = recall >= MIN_RECALL_AT_THRESHOLD
    if not eligible.any():
        return shapes[int(np.argmax(recall))]
    return shapes[int(np.argmin(np.where(eligible, false_candidates, np.inf)))]


def candidate_pairs(signatures: np.ndarray, bands: int, rows_per_band: int) -> np.ndarray:
    """Unique (left, right) row pairs that share at least one LSH band bucket, as an (n, 2) array."""
    usable = np.flatnonzero(signatures[:, 0] != np.iinfo(np.uint32).max)
    found = []
    for band in range(bands):
        block = signatures[usable, band * rows_per_band : (band + 1) * rows_per_band].astype(np.uint64)
        keys = np.zeros(len(usable), dtype=np.uint64)
        for column in range(block.shape[1]):
            keys = keys * SHINGLE_MIX + block[:, column]
        found.append(pairs_sharing_key(keys, usable))
    if not found:
        return np.empty((0, 2), dtype=np.int64)
    pairs = np.concatenate(found)
    return np.unique(pairs, axis=0) if len(pairs) else pairs


def pairs_sharing_key(keys: np.ndarray, row_ids: np.ndarray) -> np.ndarray:
    """All pairs of rows with equal keys (a chain for buckets above MAX_BUCKET_ALL_PAIRS)."""
    order = np.argsort(keys, kind="stable")
    sorted_keys, sorted_rows = keys[order], row_ids[order]
    pairs = []
    for distance in range(1, MAX_BUCKET_ALL_PAIRS):
        same = sorted_keys[distance:] == sorted_keys[:-distance]
        if not same.any():
            break
        pairs.append(np.stack([sorted_rows[:-distance][same], sorted_rows[distance:][same]], axis=1))
    if not pairs:
        return np.empty((0, 2), dtype=np.int64)
    joined = np.concatenate(pairs)
    return np.sort(joined, axis=1)


def estimated_jaccard(signatures: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """MinHash estimate of each pair's Jaccard: the fraction of signature positions that agree."""
    estimate = np.empty(len(pairs), dtype=np.float64)
    for start in range(0, len(pairs), VERIFY_BLOCK_PAIRS):
        block = pairs[start : start + VERIFY_BLOCK_PAIRS]
        estimate[start : start + len(block)] = (signatures[block[:, 0]] == signatures[block[:, 1]]).mean(axis=1)
    return estimate


def exact_jaccard(sets: ShingleSets, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Exact Jaccard similarity of the shingle sets of each (left[i], right[i]) pair."""
    result = np.empty(len(left), dtype=np.float64)
    for start in range(0, len(left), VERIFY_BLOCK_PAIRS):
        stop = start + VERIFY_BLOCK_PAIRS
        result[start:stop] = _jaccard_block(sets, left[start:stop], right[start:stop])
    return result


def _jaccard_block(sets: ShingleSets, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Intersections by lookup: each pair's right set, keyed (pair << 46 | id >> 18), is one sorted run
    (pairs ascend, ids ascend within a row), so the left ids are found with one searchsorted, no sort.

    Ids are well-mixed 64-bit hashes; two distinct ids of one pair share their top 46 bits with
    probability about |L|·|R| / 2**46 (~1e-10 for 100-shingle texts): exact for every practical purpose.
    """
    sizes = sets.sizes()
    keys = []
    for side in (left, right):
        lengths = sizes[side]
        within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        ids = sets.ids[np.repeat(sets.offsets[side], lengths) + within]
        pair = np.repeat(np.arange(len(side), dtype=np.uint64), lengths)
        keys.append((pair << np.uint64(PAIR_KEY_SHIFT)) | (ids >> np.uint64(64 - PAIR_KEY_SHIFT)))
    left_keys, right_keys = keys
    position = np.minimum(np.searchsorted(right_keys, left_keys), max(len(right_keys) - 1, 0))
    found = right_keys[position] == left_keys if len(right_keys) else np.zeros(len(left_keys), dtype=bool)
    pair_of_left = (left_keys >> np.uint64(PAIR_KEY_SHIFT)).astype(np.int64)
    intersection = np.bincount(pair_of_left[found], minlength=len(left))
    union = sizes[left] + sizes[right] - intersection
    return np.where(union > 0, intersection / np.maximum(union, 1), 0.0)


def similar_pairs(
    sets: ShingleSets,
    threshold: float,
    num_perm: int,
    seed: int,
    across_groups: np.ndarray | None = None,
) -> SimilarPairs:
    """Pairs with exact Jaccard ≥ threshold among LSH candidates; with `across_groups` (a group label
    per row) only pairs whose two rows are in different groups."""
    signatures = minhash_signatures(sets, num_perm, seed)
    bands, rows_per_band = lsh_band_shape(threshold, num_perm)
    pairs = candidate_pairs(signatures, bands, rows_per_band)
    if across_groups is not None and len(pairs):
        pairs = pairs[across_groups[pairs[:, 0]] != across_groups[pairs[:, 1]]]
    pairs = pairs[estimated_jaccard(signatures, pairs) >= threshold - ESTIMATE_MARGIN]
    similarity = exact_jaccard(sets, pairs[:, 0], pairs[:, 1])
    confirmed = similarity >= threshold
    return SimilarPairs(left=pairs[confirmed, 0], right=pairs[confirmed, 1], jaccard=similarity[confirmed])


def cluster_first_members(pairs: SimilarPairs, row_count: int) -> np.ndarray:
    """For each row, the lowest row index of its connected cluster of similar pairs (itself if alone)."""
    graph = coo_matrix(
        (np.ones(len(pairs.left), dtype=np.int8), (pairs.left, pairs.right)), shape=(row_count, row_count)
    )
    _, labels = connected_components(graph, directed=False)
    first_of_label = np.full(labels.max() + 1 if row_count else 0, row_count, dtype=np.int64)
    np.minimum.at(first_of_label, labels, np.arange(row_count))
    return first_of_label[labels]
