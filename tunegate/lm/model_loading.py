"""Loading tokenizers and models the same way for a local path or a Hub id, with safe defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunegate.core.errors import InputError, one_line


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False) -> Any:
    """AutoTokenizer from a local directory or a Hub id; remote code runs only when configured."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise InputError(f"tokenizer {name_or_path!r}: cannot load ({one_line(exc)})") from exc


def load_causal_lm(name_or_path: str, trust_remote_code: bool = False, **options: Any) -> Any:
    """AutoModelForCausalLM from a local directory or a Hub id, weights from safetensors only."""
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(
            name_or_path, use_safetensors=True, trust_remote_code=trust_remote_code, **options
        )
    except (OSError, ValueError) as exc:
        raise InputError(f"model {name_or_path!r}: cannot load ({one_line(exc)})") from exc


def is_adapter(directory: str | Path) -> bool:
    """A LoRA/QLoRA training result (adapter weights) rather than whole fine-tuned weights."""
    return (Path(directory) / "adapter_config.json").is_file()


def load_trained_model(directory: str | Path, base: str, trust_remote_code: bool = False) -> Any:
    """A training result ready to generate: the base with the adapter on top, or the whole saved weights."""
    if not is_adapter(directory):
        return load_causal_lm(str(directory), trust_remote_code)
    from peft import PeftModel

    return PeftModel.from_pretrained(load_causal_lm(base, trust_remote_code), str(directory))


def stop_token_ids(tokenizer: Any, generation_config: Any) -> list[int]:
    """Every token that ends an answer: the generation config's eos ids (a converted Gemma lists its
    `<end_of_turn>` there) and the tokenizer's eos."""
    configured = getattr(generation_config, "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else [] if configured is None else [configured])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)
