"""Label-likelihood scoring: the cached prompt path equals teacher forcing every (row, label) pair in full, and
scoring the labels on the pass that generates the greedy answers changes neither."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.conftest import REPO
from tunegate.evaluation.label_likelihood import (
    expanded_row_logprobs,
    generations_and_label_logprobs,
    label_choices,
    label_logprobs,
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


def toy_model_and_tokenizer():
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(BASE_MODEL), AutoTokenizer.from_pretrained(BASE_MODEL)


def test_the_cached_prompt_path_scores_as_teacher_forcing_each_pair():
    model, tokenizer = toy_model_and_tokenizer()
    prompt_format = PromptFormat.from_tokenizer(tokenizer)
    # Batches of 2 left-pad the shorter prompt: its positions must not shift.
    cached = label_logprobs(model, tokenizer, prompt_format, ROWS, LABELS, batch_size=2)
    full = expanded_row_logprobs(model, tokenizer, prompt_format, ROWS, LABELS, batch_size=4)
    assert cached.shape == (3, 6)
    np.testing.assert_allclose(cached, full, rtol=0, atol=1e-3)


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
