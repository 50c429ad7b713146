"""Loading tokenizers and models the same way for a local path or a Hub id, with safe defaults."""

from __future__ import annotations

from typing import Any

from tunegate.errors import InputError


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False) -> Any:
    """AutoTokenizer from a local directory or a Hub id; remote code runs only when configured."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"tokenizer {name_or_path!r}: cannot load ({first_line})") from exc
