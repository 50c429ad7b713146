"""Content fingerprints: the cache keys and the references tasks hand to each other."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

# 1 MiB reads keep hashing I/O-bound without holding big files in memory.
READ_CHUNK_BYTES = 1 << 20


def fingerprint_bytes(chunks: Any) -> str:
    """sha256 over an iterable of byte chunks, hex."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def fingerprint_file(path: str | Path) -> str:
    """sha256 of a local file's content."""
    with open(path, "rb") as handle:
        return fingerprint_bytes(iter(lambda: handle.read(READ_CHUNK_BYTES), b""))


def fingerprint_value(value: Any) -> str:
    """sha256 of a JSON-able value or pydantic model, independent of key order."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def combine(*fingerprints: str) -> str:
    """One fingerprint for several, order-sensitive."""
    return hashlib.sha256("\n".join(fingerprints).encode()).hexdigest()


def fingerprint_directory(path: str | Path) -> str:
    """sha256 over (relative path, content sha256) of every file below `path`, in sorted order."""
    root = Path(path)
    manifest = [
        f"{p.relative_to(root).as_posix()}:{fingerprint_file(p)}" for p in sorted(root.rglob("*")) if p.is_file()
    ]
    return combine(*manifest)
