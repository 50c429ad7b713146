"""Drift from the base: the arithmetic on hand-made log-probabilities, the gate's reason, the shipped retention set
(disjoint from the demo data) and a user's own retention file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.conftest import DEMO_DATA, write_text
from tests.fixtures.registry import drifted
from tests.fixtures.training import BASE_MODEL
from tunegate.config.data import DedupConfig
from tunegate.config.registry import RETENTION_SET
from tunegate.core.errors import InputError
from tunegate.data.near_duplicates import shingle_sets, similar_pairs
from tunegate.evaluation.drift import (
    DriftResult,
    answer_logprobs,
    describe_drift,
    drift_result,
    ended_answers,
    first_tokens_agree,
    per_token_drop,
    retention_prompts,
    too_much_drift,
)
from tunegate.lm.prompting import PromptFormat


def test_the_drop_is_per_token_and_averaged_over_prompts():
    # Prompt 1: the base's answer (4 tokens) at -4 nats under the base, -8 under the candidate: a drop of 1 per
    # token. Prompt 2 (3 tokens): -6 under both: no drop. Mean 0.5; the interval resamples the two prompts.
    base, tuned = per_token_drop(np.array([-4.0, -6.0]), np.array([-8.0, -6.0]), np.array([4, 3]))
    assert base.tolist() == [-1.0, -2.0] and tuned.tolist() == [-2.0, -2.0]
    drift = drift_result(base, tuned, np.array([0.0, 1.0]), match_tokens=8, seed=0)
    assert drift == DriftResult(
        rows=2,
        nats_per_token=0.5,
        nats_per_token_ci95=(0.0, 1.0),
        first_tokens_match=0.5,
        first_tokens_match_ci95=(0.0, 1.0),
        match_tokens=8,
    )
    # A candidate surer of the base's answers than the base itself drifts by a negative amount.
    surer = drift_result(np.array([-2.0, -2.0]), np.array([-1.5, -1.5]), np.ones(2), 8, seed=0)
    assert (surer.nats_per_token, surer.nats_per_token_ci95) == (-0.5, (-0.5, -0.5))


def test_answers_match_when_their_first_tokens_do():
    tokenizer = AutoTokenizer.from_pretrained(BASE_MODEL)
    base = ["The capital of France is Paris.", "Four.", ""]
    tuned = ["The capital of France is Lyon, I think.", "billing", ""]
    assert first_tokens_agree(tokenizer, base, tuned, tokens=3).tolist() == [1.0, 0.0, 1.0]
    assert first_tokens_agree(tokenizer, base, tuned, tokens=40).tolist() == [0.0, 0.0, 1.0]


def test_the_gate_refuses_a_candidate_only_when_the_whole_interval_is_above_max_drift():
    assert too_much_drift(drifted(1.2, 1.6), 1.0) == (
        "it drifted from the base by 1.400 nats/token on 100 retention prompts (95% CI 1.200 .. 1.600, above "
        "registry.max_drift 1.000)"
    )
    assert too_much_drift(drifted(0.8, 1.6), 1.0) is None  # the interval reaches below the bar: not shown to drift
    assert too_much_drift(drifted(1.2, 1.6), None) is None  # the gate is off
    assert too_much_drift(None, 1.0) is None  # drift not measured
    assert describe_drift(drifted(1.2, 1.6)) == (
        "1.400 nats/token (95% CI 1.200 .. 1.600), first 8 tokens match 0.500 on 100 retention prompts"
    )


def jsonl_texts(name: str) -> list[str]:
    """Every string in the demo file's readable records (prompts, replies, chat turns); its planted bad lines are
    skipped."""
    texts = []
    for line in (DEMO_DATA / name).read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        messages = record.get("messages") if isinstance(record, dict) else None
        values = list(record.values()) if isinstance(record, dict) else []
        values += [m.get("content") for m in messages or [] if isinstance(m, dict)]
        texts += [value for value in values if isinstance(value, str)]
    return texts


def test_the_shipped_retention_set_is_209_distinct_prompts_none_near_the_demo_data():
    prompts = retention_prompts(str(RETENTION_SET), rows=1000)["prompt"]
    assert len(prompts) == prompts.nunique() == 209
    assert retention_prompts(str(RETENTION_SET), rows=5)["prompt"].tolist() == prompts.head(5).tolist()
    tickets = pd.read_csv(DEMO_DATA / "tickets.csv", on_bad_lines="skip", keep_default_na=False)["text"]
    demo = pd.concat([tickets.astype(str), pd.Series(jsonl_texts("replies.jsonl") + jsonl_texts("preferences.jsonl"))])
    demo = demo.reset_index(drop=True)
    texts = pd.concat([prompts, demo], ignore_index=True).str.lower()
    groups = np.array([0] * len(prompts) + [1] * len(demo))
    # The near-duplicate index the dedup stage uses, at its defaults, across the two sets only.
    dedup = DedupConfig()
    sets = shingle_sets(texts.tolist(), dedup.shingle_words)
    pairs = similar_pairs(sets, dedup.threshold, dedup.num_perm, seed=0, across_groups=groups)
    assert len(pairs.left) == 0
    assert not set(prompts.str.lower()) & set(demo.str.lower())


def test_a_users_own_retention_file_in_another_shape_is_read(tmp_path):
    path = write_text(
        tmp_path / "mine.csv", "instruction,input,output\nName a colour.,,\nAdd these.,2 and 3,\nSay hi.,,\n"
    )
    assert retention_prompts(path, rows=2)["prompt"].tolist() == ["Name a colour.", "Add these.\n\n2 and 3"]


def test_a_retention_record_ingest_would_reject_is_a_one_line_error_naming_its_line(tmp_path):
    path = write_text(tmp_path / "mine.jsonl", '{"prompt": "Name a colour."}\n{"prompt": 5}\n')
    with pytest.raises(InputError) as raised:
        retention_prompts(path, rows=10)
    message = str(raised.value)
    assert message.startswith(f"{path} line 2: retention record rejected (") and "\n" not in message
    assert message.endswith("; 1 of 2 records")


def test_the_eos_is_scored_only_where_the_base_ended_its_answer():
    tokenizer = AutoTokenizer.from_pretrained(BASE_MODEL)
    model = AutoModelForCausalLM.from_pretrained(BASE_MODEL)
    prompt_format = PromptFormat.from_tokenizer(tokenizer)
    answer = "I have escalated this to our team."
    assert ended_answers(tokenizer, [answer, answer], max_new_tokens=64) == [True, True]
    assert ended_answers(tokenizer, [answer], max_new_tokens=3) == [False]
    references = pd.DataFrame({"prompt": ["Hi", "Hi"], "completion": [answer, answer], "ended": [True, False]})
    sums, counts = answer_logprobs(model, tokenizer, prompt_format, references, batch_size=2)
    answer_tokens = len(tokenizer(answer, add_special_tokens=False)["input_ids"])
    assert counts.tolist() == [answer_tokens + 1, answer_tokens]  # the ended answer's eos counts
    assert sums[0] < sums[1]  # and its log-probability is added
