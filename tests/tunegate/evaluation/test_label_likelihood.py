"""Label-likelihood scoring: the cached prompt path equals teacher forcing every (row, label) pair in full, and
scoring the labels on the pass that generates the greedy answers changes neither."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache, Gemma3ForCausalLM, Gemma3TextConfig

from tests.conftest import REPO
from tunegate.evaluation.label_likelihood import (
    expanded_row_logprobs,
    generations_and_label_logprobs,
    label_choices,
    label_logprobs,
    label_target_ids,
    label_tree,
    labels_on_repeated_cache,
    labels_on_token_tree,
    prompts_through_model,
    tree_mask_kind,
    windows_hold,
)
from tunegate.evaluation.scoring import generate
from tunegate.lm.prompting import PromptFormat

BASE_MODEL = REPO / "demo" / "base_model"
LABELS = ["billing", "shipping", "returns", "technical", "account", "product"]
ROWS = pd.DataFrame(
    [
        {"shape": "prompt_completion", "prompt": "Where is my parcel? It is two weeks late.", "completion": "shipping"},
        {"shape": "prompt_completion", "prompt": "Refund me", "completion": "billing"},
        {"shape": "prompt_completion", "prompt": "I cannot log in to my account", "completion": "account"},
    ]
)


# Labels sharing tokens (the toy tokenizer: "billing-late" is billing, -, l, ate) and labels that are prefixes of
# others: the prefix tree feeds 10 nodes where a labels x longest grid holds 25 tokens.
FAMILY_LABELS = ["billing", "billing-late", "billing-double", "shipping-late", "shipping"]


def toy_model_and_tokenizer(attention: str = "sdpa"):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(BASE_MODEL, attn_implementation=attention)
    return model, AutoTokenizer.from_pretrained(BASE_MODEL)


def test_the_cached_prompt_path_scores_as_teacher_forcing_each_pair():
    model, tokenizer = toy_model_and_tokenizer()
    prompt_format = PromptFormat.from_tokenizer(tokenizer)
    # Batches of 2 left-pad the shorter prompt: its positions must not shift.
    cached = label_logprobs(model, tokenizer, prompt_format, ROWS, LABELS, batch_size=2)
    full = expanded_row_logprobs(model, tokenizer, prompt_format, ROWS, LABELS, batch_size=4)
    assert cached.shape == (3, 6)
    np.testing.assert_allclose(cached, full, rtol=0, atol=1e-3)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_labels_sharing_prefixes_score_as_teacher_forcing_each_pair(attention):
    model, tokenizer = toy_model_and_tokenizer(attention)
    prompt_format = PromptFormat.from_tokenizer(tokenizer)
    tree = label_tree(label_target_ids(tokenizer, prompt_format, FAMILY_LABELS))
    assert (len(tree.tokens), tree_mask_kind(model)) == (10, {"sdpa": "bool", "eager": "additive"}[attention])
    cached = label_logprobs(model, tokenizer, prompt_format, ROWS, FAMILY_LABELS, batch_size=2)
    full = expanded_row_logprobs(model, tokenizer, prompt_format, ROWS, FAMILY_LABELS, batch_size=4)
    np.testing.assert_allclose(cached, full, rtol=0, atol=1e-3)


def test_the_token_tree_and_the_repeated_cache_give_the_same_scores():
    # The repeated cache serves attention implementations without custom masks (flash attention, not on CPU).
    model, tokenizer = toy_model_and_tokenizer()
    prompt_format = PromptFormat.from_tokenizer(tokenizer)
    prompts = [prompt_format.format_row(row).prompt for row in ROWS.to_dict("records")]
    label_ids = label_target_ids(tokenizer, prompt_format, FAMILY_LABELS)
    with torch.no_grad():
        first, cache, prompt_mask, pad = prompts_through_model(model, tokenizer, prompts)
        tree = labels_on_token_tree(model, first, cache, prompt_mask, label_tree(label_ids), "bool")
        first, cache, prompt_mask, pad = prompts_through_model(model, tokenizer, prompts)
        repeated = labels_on_repeated_cache(model, first, cache, prompt_mask, label_ids, pad)
    assert tree.shape == (3, 5)
    torch.testing.assert_close(tree, repeated, rtol=0, atol=1e-4)


def test_a_sliding_window_model_scores_long_prompts_as_teacher_forcing():
    # Gemma 3's sliding-window layers keep only their last `sliding_window` tokens: a tree masked over the whole
    # prompt would not fit them, so prompts longer than the window score on the repeated cache. A random 2-layer
    # Gemma 3 (one sliding layer, window 48) on the toy tokenizer: a batch of 13-24 prompt tokens (+ 10 tree nodes:
    # the tree) and one of 41-129 (the repeated cache).
    tokenizer = AutoTokenizer.from_pretrained(BASE_MODEL)
    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=48,
        layer_types=["sliding_attention", "full_attention"],
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    model = Gemma3ForCausalLM(config).eval()
    prompt_format = PromptFormat.from_tokenizer(tokenizer)
    rows = pd.concat([ROWS, ROWS.assign(prompt=ROWS["prompt"] * 8)], ignore_index=True)
    cached = label_logprobs(model, tokenizer, prompt_format, rows, FAMILY_LABELS, batch_size=3)
    full = expanded_row_logprobs(model, tokenizer, prompt_format, rows, FAMILY_LABELS, batch_size=5)
    np.testing.assert_allclose(cached, full, rtol=0, atol=1e-4)
    assert windows_hold(DynamicCache(config=config), 47) and not windows_hold(DynamicCache(config=config), 48)


def test_each_row_gets_its_likeliest_label():
    model, tokenizer = toy_model_and_tokenizer()
    prompt_format = PromptFormat.from_tokenizer(tokenizer)
    scores = expanded_row_logprobs(model, tokenizer, prompt_format, ROWS, LABELS, batch_size=4)
    chosen = label_choices(model, tokenizer, prompt_format, ROWS, LABELS, batch_size=3)
    assert chosen == [LABELS[i] for i in scores.argmax(axis=1)]
    assert label_choices(model, tokenizer, prompt_format, ROWS.head(0), LABELS, batch_size=3) == []


def test_greedy_answers_and_label_scores_from_one_pass_equal_each_computed_alone():
    model, tokenizer = toy_model_and_tokenizer()
    prompt_format = PromptFormat.from_tokenizer(tokenizer)
    prompts = [prompt_format.format_row(row).prompt for row in ROWS.to_dict("records")]
    # Batches of 2: one left-padded batch; 6 new tokens: the cache holds answer tokens that must be cropped off.
    answers, scores = generations_and_label_logprobs(
        model, tokenizer, prompt_format, ROWS, LABELS, max_new_tokens=6, batch_size=2
    )
    assert answers == generate(model, tokenizer, prompts, 6, batch_size=2)
    assert max(len(tokenizer(answer, add_special_tokens=False)["input_ids"]) for answer in answers) > 1
    alone = label_logprobs(model, tokenizer, prompt_format, ROWS, LABELS, batch_size=2)
    np.testing.assert_allclose(scores, alone, rtol=0, atol=1e-4)
