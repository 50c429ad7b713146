"""Deployable builds: which training results have a merged build, the int8 copy, a build written whole or not at
all, and latency measured after a warm-up call."""

from __future__ import annotations

import json

import torch

from tests.fixtures.training import BASE_MODEL
from tunegate.lm.model_loading import load_causal_lm, load_tokenizer
from tunegate.lm.prompting import PromptFormat
from tunegate.registry.exports import (
    latency_ms,
    quantized_int8,
    save_whole,
    serialized_bytes,
    unmergeable_reason,
    weight_bytes,
)


def test_only_a_weight_delta_adapter_has_a_merged_build(tmp_path):
    assert unmergeable_reason(BASE_MODEL, "full") == (
        "a full fine-tune is whole weights already: there is no adapter to merge"
    )
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "PROMPT_TUNING"}))
    assert unmergeable_reason(tmp_path, "prompt_tuning") == (
        "prompt_tuning trains virtual tokens fed with the input, not weight deltas: nothing to merge"
    )
    assert unmergeable_reason(tmp_path, "lora") is None and unmergeable_reason(tmp_path, "qlora") is None


def test_the_int8_build_is_a_quantized_copy_and_the_model_is_left_as_it_was():
    model = load_causal_lm(BASE_MODEL)
    fp32_bytes = serialized_bytes(model)
    quantized = quantized_int8(model)
    float_linears = [m for m in model.modules() if type(m) is torch.nn.Linear]
    int8_linears = [m for m in quantized.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert len(int8_linears) == len(float_linears) > 0  # every one, lm_head included
    assert not [m for m in quantized.modules() if type(m) is torch.nn.Linear]
    assert type(model.lm_head) is torch.nn.Linear  # the original keeps its float layers
    # The toy's 4096 x 192 embedding stays float32: 5,549,696 of 9,458,993 bytes measured.
    assert serialized_bytes(quantized) < 0.65 * fp32_bytes


def test_a_whole_build_is_written_in_place_or_not_at_all(tmp_path):
    model, tokenizer = load_causal_lm(BASE_MODEL), load_tokenizer(BASE_MODEL)
    prompt_format = PromptFormat.from_tokenizer(tokenizer, None)
    out = tmp_path / "merged"
    (tmp_path / "merged.partial").mkdir()  # left by a killed export
    (tmp_path / "merged.partial" / "stale.bin").write_bytes(b"x")
    save_whole(model, tokenizer, prompt_format, out)
    assert not (tmp_path / "merged.partial").exists() and not (out / "stale.bin").exists()
    assert weight_bytes(out) == (out / "model.safetensors").stat().st_size > 0
    assert PromptFormat.load(out) == prompt_format


def test_latency_is_timed_after_one_warm_up_call():
    calls: list[str] = []
    p50, p95 = latency_ms(calls.append, ["a", "b", "c"])
    assert calls == ["a", "a", "b", "c"] and 0.0 <= p50 <= p95
    assert all(value != value for value in latency_ms(calls.append, []))  # NaN, NaN: nothing was timed


def test_only_safetensors_weights_count(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"0" * 64)
    assert weight_bytes(tmp_path) == 0
    (tmp_path / "model.safetensors").write_bytes(b"0" * 48)
    assert weight_bytes(tmp_path) == 48
