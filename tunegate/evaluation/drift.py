"""What a tuned model forgets: its drift from the base on general instructions that have nothing to do with the task.

The base answers each retention prompt greedily once (its answers are the references, cached per base). A candidate
is then measured on them two ways, each with a paired bootstrap 95% interval over prompts:

- **nats per token**: the mean, over prompts, of the per-token log-likelihood drop of the base's own answer under
  the candidate, (log p_base(answer) - log p_candidate(answer)) / tokens. Averaged over answers the base itself
  produced, this estimates KL(base || candidate) on those prompts (greedy answers, not samples: the estimate leans
  to the base's likeliest behaviour, which is what a user notices first). 0 is the base itself; 0.69 means the
  candidate finds the base's answers half as likely per token; it can be negative (a candidate that got surer of
  them).
- **first tokens match**: the share of prompts where the candidate's greedy answer starts with the same
  `match_tokens` tokens as the base's.

It measures drift on these prompts, not quality: an answer that changed for the better counts as drift too, and a
model can keep its answers' likelihood while it loses a skill the prompts do not exercise.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from tunegate.core.errors import InputError
from tunegate.evaluation.scoring import paired_bootstrap_ci
from tunegate.lm.prompting import PromptFormat
from tunegate.lm.sft_data import target_logprobs


class DriftResult(BaseModel):
    """A candidate's drift from its base on the retention prompts."""

    rows: int = Field(description="Retention prompts measured.")
    nats_per_token: float = Field(description="Mean per-token log-likelihood drop of the base's answers.")
    nats_per_token_ci95: tuple[float, float] = Field(description="Paired bootstrap 95% interval of that mean.")
    first_tokens_match: float = Field(description="Share of prompts whose greedy answer starts as the base's.")
    first_tokens_match_ci95: tuple[float, float] = Field(description="Bootstrap 95% interval of that share.")
    match_tokens: int = Field(description="How many first tokens must agree.")


def answer_logprobs(
    model: Any, tokenizer: Any, prompt_format: PromptFormat, references: pd.DataFrame, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(summed log-likelihood of each reference answer after its prompt, its token count): the end-of-sequence
    token counts only where the base ended its answer (`ended`), not where it was cut at the length limit (a cut
    answer's eos was measured at -15 nats on SmolLM2, a third of a 32-token answer's total, noise for both models)."""
    rows = references.assign(shape="prompt_completion", messages=None)
    sums, counts = np.zeros(len(rows)), np.zeros(len(rows), dtype=int)
    unended = replace(prompt_format, eos_token="")
    for ended, chosen_format in ((True, prompt_format), (False, unended)):
        chosen = np.flatnonzero(rows["ended"].to_numpy() == ended)
        if len(chosen):
            part_sums, part_counts = target_logprobs(
                model, tokenizer, chosen_format, rows.iloc[chosen].reset_index(drop=True), batch_size
            )
            sums[chosen], counts[chosen] = part_sums, part_counts
    return sums, counts


def ended_answers(tokenizer: Any, answers: list[str], max_new_tokens: int) -> list[bool]:
    """Whether each greedy answer ended before the length limit (its tokens, re-encoded, are fewer)."""
    return [len(tokenizer(answer, add_special_tokens=False)["input_ids"]) < max_new_tokens for answer in answers]


def per_token_drop(
    base_sums: np.ndarray, tuned_sums: np.ndarray, token_counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(base, tuned) per-token log-likelihoods of each reference answer; their difference is each prompt's drop."""
    counts = np.maximum(token_counts, 1)
    return base_sums / counts, tuned_sums / counts


def first_tokens_agree(tokenizer: Any, base_answers: list[str], tuned_answers: list[str], tokens: int) -> np.ndarray:
    """1.0 where both answers start with the same `tokens` tokens (or are the same shorter answer), else 0.0."""

    def first(answer: str) -> list[int]:
        return tokenizer(answer, add_special_tokens=False)["input_ids"][:tokens]

    return np.array([float(first(b) == first(t)) for b, t in zip(base_answers, tuned_answers, strict=True)])


def drift_result(
    base_per_token: np.ndarray, tuned_per_token: np.ndarray, matches: np.ndarray, match_tokens: int, seed: int
) -> DriftResult:
    """The mean drop (base - tuned, nats per token) and the match rate, each with its bootstrap interval."""
    drop = base_per_token - tuned_per_token
    # paired_bootstrap_ci(a, b) is the interval of mean(b - a): (tuned, base) gives the drop's.
    return DriftResult(
        rows=len(drop),
        nats_per_token=float(drop.mean()) if len(drop) else math.nan,
        nats_per_token_ci95=paired_bootstrap_ci(tuned_per_token, base_per_token, seed),
        first_tokens_match=float(matches.mean()) if len(matches) else math.nan,
        first_tokens_match_ci95=paired_bootstrap_ci(np.zeros(len(matches)), matches, seed),
        match_tokens=match_tokens,
    )


def too_much_drift(drift: DriftResult | None, max_drift: float | None) -> str | None:
    """Why the candidate drifted too far from its base (the lower bound of its drift above `max_drift`), else
    None (also when drift was not measured or the gate is off)."""
    if drift is None or max_drift is None:
        return None
    low, high = drift.nats_per_token_ci95
    if not low > max_drift:
        return None
    return (
        f"it drifted from the base by {drift.nats_per_token:.3f} nats/token on {drift.rows} retention prompts "
        f"(95% CI {low:.3f} .. {high:.3f}, above registry.max_drift {max_drift:.3f})"
    )


def describe_drift(drift: DriftResult) -> str:
    """`0.123 nats/token (95% CI 0.100 .. 0.150), first 8 tokens match 0.870 on 100 retention prompts`."""
    low, high = drift.nats_per_token_ci95
    return (
        f"{drift.nats_per_token:.3f} nats/token (95% CI {low:.3f} .. {high:.3f}), first {drift.match_tokens} "
        f"tokens match {drift.first_tokens_match:.3f} on {drift.rows} retention prompts"
    )


def retention_prompts(path: str, rows: int) -> pd.DataFrame:
    """The first `rows` prompts of the retention file as prompt-only rows; a file in any record shape ingest reads.
    A record ingest would reject, or a file with no prompts, is a one-line InputError."""
    from tunegate.config.data import SourceConfig
    from tunegate.data.canonical import CANONICAL_COLUMNS, canonicalize_records
    from tunegate.data.readers import open_source_bytes, read_records

    source = SourceConfig(path=path)
    records, rejected = canonicalize_records(
        list(read_records(source, open_source_bytes(source.path))), source, "retention"
    )
    if rejected:
        first = rejected[0]
        raise InputError(
            f"{source.path} line {first['source_line']}: retention record rejected ({'; '.join(first['checks'])}); "
            f"{len(rejected)} of {len(records) + len(rejected)} records"
        )
    at = CANONICAL_COLUMNS.index("prompt")
    prompts = [str(record[at]) for record in records if isinstance(record[at], str) and record[at].strip()]
    if not prompts:
        raise InputError(f"{source.path}: no retention prompts (expected records with a prompt or instruction)")
    return pd.DataFrame({"prompt": prompts[:rows]})
