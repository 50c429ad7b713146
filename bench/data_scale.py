"""Data stages at scale: ingest + validate + dedup + split on 10k, 100k and 1M synthetic rows.

python -m bench.data_scale [--sizes 10000,100000,1000000] [--baseline-max-rows 200000]

Data: JSONL prompt/completion rows with instruction-data lengths (prompt words lognormal, median 20; completion
median 40; 3-1500 words; Zipf-distributed 40k-word vocabulary), of which 5% are planted exact duplicates (half
verbatim, half with case and whitespace changed), 5% planted near duplicates (1 + words/60 words replaced) and
0.5% rows with an empty completion (quarantined by validation). Rows are shuffled.

Ours: the four stage functions run in one fresh process per size, as the flow runs them (task bodies; Prefect's
orchestration around them is measured by the caching benchmark). Baseline: a straightforward per-row
`datasketch` loop (word-bigram MinHash, 128 permutations, MinHashLSH at the same threshold: query, then insert
if nothing matched) over the same validated rows, in its own process.

Quality, the same for both: recall = planted near-duplicate pairs (those whose exact bigram Jaccard reaches the
threshold) that end in one cluster; precision = removed rows that are in their match's planted family, or whose
exact Jaccard with it reaches the threshold (a duplicate the generator made by chance).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common import REPO, target, write_results

SIZES = (10_000, 100_000, 1_000_000)
EXACT_SHARE, NEAR_SHARE, INVALID_SHARE = 0.05, 0.05, 0.005
VOCABULARY_WORDS = 40_000
SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "be", "do", "fa", "gu", "ha", "je", "pi", "zo")
# Instruction data lengths in words: Alpaca/Dolly-like prompts (median 20) and answers (median 40), long tails.
PROMPT_WORDS, COMPLETION_WORDS = (20, 0.8), (40, 0.9)
MIN_WORDS, MAX_WORDS = 3, 1500
WORD = re.compile(r"\w+")
TARGET_SECONDS_AT_1M, TARGET_RSS_GB, TARGET_RECALL, TARGET_SPEEDUP = 120, 8, 0.9, 5


# --- data --------------------------------------------------------------------------------------------------


def vocabulary(rng: np.random.Generator) -> np.ndarray:
    syllables = np.array(SYLLABLES, dtype=object)
    parts = syllables[rng.integers(0, len(SYLLABLES), (VOCABULARY_WORDS, 3))]
    lengths = rng.integers(1, 4, VOCABULARY_WORDS)
    # The index suffix keeps the words distinct; the commonest 2,000 stay short, as in natural text.
    return np.array(
        ["".join(p[:k]) + (str(i) if i >= 2000 else "") for i, (p, k) in enumerate(zip(parts, lengths, strict=True))],
        dtype=object,
    )


def random_texts(rng: np.random.Generator, words: np.ndarray, count: int, median_sigma: tuple[int, float]) -> list:
    median, sigma = median_sigma
    lengths = np.clip(rng.lognormal(np.log(median), sigma, count), MIN_WORDS, MAX_WORDS).astype(int)
    ranks = 1.0 / np.arange(1, len(words) + 1)
    drawn = words[rng.choice(len(words), lengths.sum(), p=ranks / ranks.sum())]
    return [" ".join(piece) for piece in np.split(drawn, np.cumsum(lengths)[:-1])]


def near_copy(rng: np.random.Generator, prompt: str, completion: str) -> tuple[str, str]:
    """Replace 1 + words/60 words (a typo-level edit: Jaccard ~0.9 for a 60-word pair)."""
    prompt_words, completion_words = prompt.split(" "), completion.split(" ")
    words = prompt_words + completion_words
    for position in rng.choice(len(words), 1 + len(words) // 60, replace=False):
        words[position] = "edited" + words[position]
    return " ".join(words[: len(prompt_words)]), " ".join(words[len(prompt_words) :])


def exact_copy(rng: np.random.Generator, prompt: str, completion: str) -> tuple[str, str]:
    """Verbatim, or upper-cased with doubled spaces: equal after normalization."""
    if rng.random() < 0.5:
        return prompt, completion
    return "  " + prompt.upper().replace(" ", "  "), completion.upper() + " "


def write_synthetic(rows: int, path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Write `rows` JSONL records; return the truth per line: family (the original row) and kind."""
    rng = np.random.default_rng(seed)
    words = vocabulary(rng)
    exact, near, invalid = (round(rows * share) for share in (EXACT_SHARE, NEAR_SHARE, INVALID_SHARE))
    originals = rows - exact - near
    prompts = random_texts(rng, words, originals, PROMPT_WORDS)
    completions = random_texts(rng, words, originals, COMPLETION_WORDS)
    for index in rng.choice(originals, invalid, replace=False):
        completions[index] = ""
    valid_originals = np.array([i for i in range(originals) if completions[i]])
    family = list(range(originals))
    kind = ["invalid" if not completion else "original" for completion in completions]
    for copies, copy, name in ((exact, exact_copy, "exact"), (near, near_copy, "near")):
        for source in rng.choice(valid_originals, copies):
            prompt, completion = copy(rng, prompts[source], completions[source])
            prompts.append(prompt)
            completions.append(completion)
            family.append(int(source))
            kind.append(name)
    order = rng.permutation(rows)
    with open(path, "w", encoding="utf-8") as handle:
        for index in order:
            handle.write(json.dumps({"prompt": prompts[index], "completion": completions[index]}) + "\n")
    line_of = np.empty(rows, dtype=np.int64)
    line_of[order] = np.arange(1, rows + 1)
    return {
        "family_line": line_of[np.array(family)][order],  # per line: the line of its original row
        "kind": np.array(kind, dtype=object)[order],
    }


# --- quality -----------------------------------------------------------------------------------------------


def bigrams(text: str) -> set[str]:
    """Independent of the pipeline's tokenizer: lower-cased \\w+ words, every two in a row."""
    words = WORD.findall(text.lower())
    return {" ".join(words[i : i + 2]) for i in range(max(1, len(words) - 1))}


def jaccard(a: str, b: str) -> float:
    left, right = bigrams(a), bigrams(b)
    return len(left & right) / len(left | right) if left | right else 1.0


def quality(
    texts: pd.Series, cluster_line: pd.Series, matched_line: pd.Series, truth: dict, threshold: float
) -> dict[str, Any]:
    """Recall of planted near pairs and precision of removals; all series are indexed by source line.

    cluster_line: each considered row's cluster representative (itself when kept); matched_line: for removed
    rows only, the row they were removed in favour of.
    """
    family = pd.Series(truth["family_line"], index=np.arange(1, len(truth["kind"]) + 1))
    kind = pd.Series(truth["kind"], index=family.index)
    near_lines = kind.index[(kind == "near").to_numpy()].intersection(cluster_line.index)
    sources = family[near_lines]
    considered = sources.isin(cluster_line.index).to_numpy()
    near_lines, sources = near_lines[considered], sources[considered]
    similar = np.array([jaccard(texts[c], texts[s]) >= threshold for c, s in zip(near_lines, sources, strict=True)])
    found = cluster_line[near_lines].to_numpy() == cluster_line[sources.to_numpy()].to_numpy()
    same_family = family[matched_line.index].to_numpy() == family[matched_line.to_numpy()].to_numpy()
    by_chance = [
        jaccard(texts[row], texts[match]) >= threshold
        for row, match in zip(matched_line.index[~same_family], matched_line.to_numpy()[~same_family], strict=True)
    ]
    correct = int(same_family.sum()) + int(sum(by_chance))
    return {
        "planted_near_pairs": int(similar.sum()),
        "planted_below_threshold": int((~similar).sum()),
        "recall": round(float(found[similar].mean()) if similar.any() else 1.0, 4),
        "removed": len(matched_line),
        "precision": round(correct / len(matched_line) if len(matched_line) else 1.0, 4),
        "false_removals": len(matched_line) - correct,
    }


def resolve_clusters(lines: pd.Index, dropped_line: np.ndarray, duplicate_of_line: np.ndarray) -> pd.Series:
    """Cluster representative per line; a row dropped as an exact copy of a row later dropped as a near
    duplicate follows the chain to the kept row."""
    cluster = pd.Series(lines.to_numpy(), index=lines)
    cluster[dropped_line] = duplicate_of_line
    for _ in range(3):
        cluster = pd.Series(cluster[cluster.to_numpy()].to_numpy(), index=lines)
    return cluster


# --- the two sides -----------------------------------------------------------------------------------------


def run_ours(data: Path, truth: dict, home: Path, out: Path) -> None:
    """Child process: the four stages on `data`; writes timings, RSS and quality to `out`."""
    from tasks.deduplicate import deduplicate_rows
    from tasks.ingest import fingerprint_sources, ingest_sources
    from tasks.split import split_rows
    from tasks.validate import validate_rows
    from tunegate.config.data import DedupConfig, SourceConfig, SplitConfig, TaskConfig, ValidationConfig

    sources = [SourceConfig(path=str(data), labelled=False)]
    validation = ValidationConfig(min_rows=10, max_prompt_chars=20_000, max_completion_chars=20_000, data_docs=False)
    dedup = DedupConfig()
    seconds: dict[str, float] = {}
    peaks: dict[str, float] = {}  # the process's peak RSS once each stage has run: where the peak was reached
    ingested = timed(
        seconds, peaks, "ingest", lambda: ingest_sources.fn(sources, fingerprint_sources.fn(sources), str(home))
    )
    validated = timed(seconds, peaks, "validate", validate_rows.fn, ingested, validation, TaskConfig(), str(home))
    deduplicated = timed(seconds, peaks, "dedup", deduplicate_rows.fn, validated.valid, dedup, str(home))
    split = timed(seconds, peaks, "split", split_rows.fn, deduplicated.kept, SplitConfig(), dedup, str(home))
    valid = validated.valid.read(["source_line", "prompt", "completion"]).set_index("source_line")
    removed = deduplicated.duplicates.read()
    cluster = resolve_clusters(valid.index, removed["source_line"].to_numpy(), line_of(removed["duplicate_of"]))
    matched = pd.Series(line_of(removed["matched_row_id"]), index=removed["source_line"].to_numpy())
    texts = valid["prompt"] + "\n" + valid["completion"]
    result = {
        "seconds": seconds,
        "rows_in": {
            "ingest": ingested.rows_read,
            "validate": ingested.canonical.rows,
            "dedup": validated.valid.rows,
            "split": deduplicated.kept.rows,
        },
        "quarantined": validated.quarantined,
        "exact_removed": deduplicated.exact_duplicates,
        "near_removed": deduplicated.near_duplicates,
        "split_rows": [split.train.rows, split.val.rows, split.test.rows],
        "leaks": split.test_train_near_duplicates,
        "peak_rss_gb": max(peaks.values()),
        "peak_rss_after_gb": peaks,
        "quality": quality(texts, cluster, matched, truth, dedup.threshold),
        "valid_path": validated.valid.path,
    }
    out.write_text(json.dumps(result), encoding="utf-8")


def timed(seconds: dict[str, float], peaks: dict[str, float], name: str, function: Any, *args: Any) -> Any:
    started = time.perf_counter()
    result = function(*args)
    seconds[name] = time.perf_counter() - started
    peaks[name] = peak_rss_gb()
    return result


def peak_rss_gb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


def line_of(row_ids: pd.Series) -> np.ndarray:
    """Source line of each `<file>:<line>` row id."""
    return row_ids.str.rsplit(":", n=1).str[1].astype(np.int64).to_numpy()


def run_baseline(valid_path: Path, truth: dict, max_rows: int, out: Path) -> None:
    """Child process: the per-row datasketch loop over the first `max_rows` validated rows."""
    from datasketch import MinHash, MinHashLSH

    from tunegate.config.data import DedupConfig

    dedup = DedupConfig()
    valid = pd.read_parquet(valid_path, columns=["source_line", "prompt", "completion"]).head(max_rows or None)
    texts = (valid["prompt"] + "\n" + valid["completion"]).tolist()
    lines = valid["source_line"].to_numpy()
    started = time.perf_counter()
    index = MinHashLSH(threshold=dedup.threshold, num_perm=dedup.num_perm)
    matched: dict[int, int] = {}
    for position, text in enumerate(texts):
        signature = MinHash(num_perm=dedup.num_perm, seed=dedup.seed)
        signature.update_batch([shingle.encode("utf-8") for shingle in bigrams(text)])
        found = index.query(signature)
        if found:
            matched[position] = min(found)
        else:
            index.insert(position, signature)
    seconds = time.perf_counter() - started
    dropped = np.array(sorted(matched), dtype=np.int64)
    kept_match = np.array([matched[p] for p in dropped], dtype=np.int64)
    cluster = resolve_clusters(pd.Index(lines), lines[dropped], lines[kept_match])
    matched_line = pd.Series(lines[kept_match], index=lines[dropped])
    result = {
        "rows": len(texts),
        "seconds": seconds,
        "removed": len(dropped),
        "peak_rss_gb": peak_rss_gb(),
        "quality": quality(pd.Series(texts, index=lines), cluster, matched_line, truth, dedup.threshold),
    }
    out.write_text(json.dumps(result), encoding="utf-8")


# --- driver ------------------------------------------------------------------------------------------------


def child(arguments: list[str]) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.data_scale", *arguments]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments[:2])} failed:\n{done.stderr[-3000:]}")
    return json.loads(Path(arguments[-1]).read_text())


def measure_size(rows: int, workdir: Path, baseline_max_rows: int) -> list[dict[str, Any]]:
    data, truth_path = workdir / f"rows-{rows}.jsonl", workdir / f"truth-{rows}.npz"
    np.savez(truth_path, **write_synthetic(rows, data))
    ours = child(["--ours", str(data), str(truth_path), str(workdir / f"home-{rows}"), str(workdir / f"o{rows}.json")])
    cap = min(rows, baseline_max_rows) if baseline_max_rows else rows
    baseline = child(["--baseline", ours["valid_path"], str(truth_path), str(cap), str(workdir / f"b{rows}.json")])
    total = sum(ours["seconds"].values())
    stage_rate = {f"{stage}_rows_per_s": ours["rows_in"][stage] / ours["seconds"][stage] for stage in ours["seconds"]}
    return [
        {
            "rows": rows,
            "path": "ours",
            "total_s": round(total, 1),
            **{f"{stage}_s": round(value, 1) for stage, value in ours["seconds"].items()},
            **{name: round(value) for name, value in stage_rate.items()},
            "peak_rss_gb": ours["peak_rss_gb"],
            "peak_rss_reached_in": next(
                stage for stage, peak in ours["peak_rss_after_gb"].items() if peak >= ours["peak_rss_gb"]
            ),
            "quarantined": ours["quarantined"],
            "exact_removed": ours["exact_removed"],
            "near_removed": ours["near_removed"],
            "leaks": ours["leaks"],
            **ours["quality"],
        },
        {
            "rows": rows,
            "path": "datasketch loop" + ("" if cap >= ours["rows_in"]["dedup"] else f" (first {cap:,} valid rows)"),
            "dedup_s": round(baseline["seconds"], 1),
            "dedup_rows_per_s": round(baseline["rows"] / baseline["seconds"]),
            "peak_rss_gb": baseline["peak_rss_gb"],
            **baseline["quality"],
        },
    ]


def scale_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ours = {row["rows"]: row for row in rows if row["path"] == "ours"}
    baseline = {row["rows"]: row for row in rows if row["path"] != "ours"}
    largest = max(ours)
    speedups = {size: ours[size]["dedup_rows_per_s"] / baseline[size]["dedup_rows_per_s"] for size in ours}
    return [
        target(
            f"{largest:,} rows through all data stages ≤ {TARGET_SECONDS_AT_1M} s",
            f"{ours[largest]['total_s']} s",
            largest >= 1_000_000 and ours[largest]["total_s"] <= TARGET_SECONDS_AT_1M,
        ),
        target(
            f"peak RSS ≤ {TARGET_RSS_GB} GB", f"{ours[largest]['peak_rss_gb']} GB", ours[largest]["peak_rss_gb"] <= 8
        ),
        target(
            f"near-duplicate recall ≥ {TARGET_RECALL}",
            ", ".join(f"{ours[s]['recall']}" for s in sorted(ours)),
            all(ours[s]["recall"] >= TARGET_RECALL for s in ours),
        ),
        target(
            f"dedup rows/s ≥ {TARGET_SPEEDUP}× the datasketch loop",
            ", ".join(f"{speedups[s]:.1f}×" for s in sorted(ours)),
            all(value >= TARGET_SPEEDUP for value in speedups.values()),
        ),
    ]


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated row counts")
    parser.add_argument(
        "--baseline-max-rows",
        type=int,
        default=200_000,
        help="the datasketch loop runs on at most this many validated rows (0: all); its rate only falls as its "
        "index grows, so a cap flatters the baseline",
    )
    parser.add_argument("--ours", nargs=4, metavar=("DATA", "TRUTH", "HOME", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--baseline", nargs=4, metavar=("VALID", "TRUTH", "ROWS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ours:
        data, truth, home, out = args.ours
        run_ours(Path(data), dict(np.load(truth, allow_pickle=True)), Path(home), Path(out))
        return Path(out)
    if args.baseline:
        valid, truth, max_rows, out = args.baseline
        run_baseline(Path(valid), dict(np.load(truth, allow_pickle=True)), int(max_rows), Path(out))
        return Path(out)
    workdir = Path(tempfile.mkdtemp(prefix="bench-data-scale-"))
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        rows += measure_size(size, workdir, args.baseline_max_rows)
        print(json.dumps(rows[-2:]), flush=True)
    return write_results("data_scale", rows, scale_targets(rows))


if __name__ == "__main__":
    print(main())
