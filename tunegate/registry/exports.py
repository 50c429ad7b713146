"""Deployable builds of a trained adapter: the adapter merged into the base's weights (`merge_and_unload`), and a
CPU int8 build of those weights (dynamic quantization of every linear layer). Both load from safetensors; the int8
build is quantized when it is loaded (torch's dynamic int8 modules have no safetensors form)."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunegate.lm.model_loading import is_adapter, load_trained_model

INT8_DYNAMIC = "int8_dynamic"  # the quantization a registered int8 build names in its model config


def unmergeable_reason(directory: str | Path, method: str) -> str | None:
    """Why this training result has no merged build of its own (None when it has one)."""
    if not is_adapter(directory):
        return "a full fine-tune is whole weights already: there is no adapter to merge"
    if method not in ("lora", "qlora"):
        return f"{method} trains virtual tokens fed with the input, not weight deltas: nothing to merge"
    return None


def merged_model(directory: str | Path, base: str, trust_remote_code: bool = False) -> Any:
    """The base with the LoRA deltas added into its weights: a plain transformers model, no PEFT at run time."""
    return load_trained_model(directory, base, trust_remote_code).merge_and_unload()


def quantized_int8(model: Any) -> Any:
    """A copy of `model` with every nn.Linear (lm_head included) as a dynamically quantized int8 linear: int8
    weights with a per-tensor scale, activations quantized per batch as they come. CPU only (x86 and ARM
    engines); `model` itself is left as it was."""
    import warnings

    import torch

    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao (not a dependency); torch 2.13 still runs it.
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
        return torch.ao.quantization.quantize_dynamic(model.eval(), {torch.nn.Linear}, dtype=torch.qint8)


def load_build(directory: str | Path, base: str, trust_remote_code: bool, quantization: str | None) -> Any:
    """A registered build ready to generate: adapter on its base, or whole weights, int8-quantized if named."""
    model = load_trained_model(directory, base, trust_remote_code)
    return quantized_int8(model) if quantization == INT8_DYNAMIC else model


def serialized_bytes(model: Any) -> int:
    """Bytes of the model's state dict as torch writes it (the int8 build's weights, packed int8 + scales)."""
    import torch

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def weight_bytes(directory: str | Path) -> int:
    """Bytes of the safetensors weights in a directory."""
    return sum(path.stat().st_size for path in Path(directory).glob("*.safetensors"))


def base_bytes(base: str, adapter_model: Any) -> int:
    """The bytes an adapter's base serves with: its safetensors when it is a local directory, else (a Hub id, sized
    without downloading anything) its loaded weights, the adapter's own left out."""
    if Path(base).is_dir():
        return weight_bytes(base)
    weights = adapter_model.get_base_model().named_parameters()
    return sum(tensor.numel() * tensor.element_size() for name, tensor in weights if "lora_" not in name)


def latency_ms(answer: Callable[[str], Any], prompts: list[str]) -> tuple[float, float]:
    """(p50, p95) milliseconds to answer one prompt alone, as one request is served; one warm-up call first
    (the first call pays for lazy initialisation, ~10x a later one on this CPU)."""
    import numpy as np

    if not prompts:
        return math.nan, math.nan
    answer(prompts[0])
    durations = []
    for prompt in prompts:
        started = time.perf_counter()
        answer(prompt)
        durations.append((time.perf_counter() - started) * 1000.0)
    p50, p95 = np.percentile(np.array(durations), [50, 95])
    return float(p50), float(p95)


def save_whole(model: Any, tokenizer: Any, prompt_format: Any, out_dir: Path) -> None:
    """Weights (safetensors), tokenizer and prompt format, written beside `out_dir` and renamed into place: a killed
    export never leaves a half-written build behind under the final name."""
    import shutil

    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    prompt_format.save(partial)
    shutil.rmtree(out_dir, ignore_errors=True)
    partial.rename(out_dir)
