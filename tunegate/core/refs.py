"""References passed between tasks: a path, a content fingerprint and counts, never the data itself.

Every reference can say whether what it points at is still there and unchanged (`output_problems`): a cache hit
is only used when none of the outputs it references has a problem (`tunegate.runtime.stages.run_verified`).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, Field

from tunegate.core.fingerprint import fingerprint_directory, fingerprint_file


class TableRef(BaseModel):
    """A Parquet table a stage wrote."""

    path: str = Field(description="Absolute path of the Parquet file.")
    fingerprint: str = Field(description="sha256 of the file's bytes.")
    rows: int = Field(description="Number of rows in the table.")

    def read(self, columns: list[str] | None = None) -> pd.DataFrame:
        return pd.read_parquet(self.path, columns=columns)

    def output_problems(self) -> list[str]:
        return file_problems(self.path, self.fingerprint)


class AdapterRef(BaseModel):
    """Trained weights a stage saved: the directory (adapter or whole weights, tokenizer, prompt format), the
    content fingerprint of every file in it, and the method that trained them."""

    path: str = Field(description="Absolute path of the saved directory.")
    fingerprint: str = Field(description="sha256 over the directory's file names and contents.")
    method: str = Field(description="The training method (lora, qlora, full): how to load the directory.")

    @classmethod
    def of(cls, path: str | Path, method: str) -> AdapterRef:
        """Reference a directory as it is now."""
        return cls(path=str(path), fingerprint=fingerprint_directory(path), method=method)

    def output_problems(self) -> list[str]:
        return directory_problems(self.path, self.fingerprint)


def file_problems(path: str | Path, fingerprint: str) -> list[str]:
    """[] if the file exists with this content, else what is wrong with it."""
    if not Path(path).is_file():
        return [f"{path} is missing"]
    actual = fingerprint_file(path)
    return [] if actual == fingerprint else [f"{path} changed (sha256 {actual[:12]}, recorded {fingerprint[:12]})"]


def directory_problems(path: str | Path, fingerprint: str) -> list[str]:
    """[] if the directory exists with exactly these files and contents, else what is wrong with it."""
    if not Path(path).is_dir():
        return [f"{path} is missing"]
    actual = fingerprint_directory(path)
    return [] if actual == fingerprint else [f"{path} changed (sha256 {actual[:12]}, recorded {fingerprint[:12]})"]


def output_problems(value: Any) -> list[str]:
    """Problems of every output referenced anywhere in a stage result (models, lists, dicts, nested)."""
    problems: list[str] = []
    if isinstance(value, BaseModel):
        if callable(getattr(value, "output_problems", None)):
            problems += value.output_problems()
        for name in type(value).model_fields:
            problems += output_problems(getattr(value, name))
    elif isinstance(value, list | tuple):
        for item in value:
            problems += output_problems(item)
    elif isinstance(value, dict):
        for item in value.values():
            problems += output_problems(item)
    return problems


def partial_path(path: Path) -> Path:
    """A temporary name next to `path`, unique to this writer (process and call), renamed over `path` when
    complete: two processes writing the same output never share a temporary file."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a unique temporary path to write; on success it replaces `path`, on failure it is removed, so
    readers see the old file or the new one, never half of one. An OS error (a full disk, a size limit) names
    `path`: the libraries that write Parquet do not say which file they were writing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(path)
    try:
        yield partial
        partial.replace(path)
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:
            raise OSError(exc.errno, os.strerror(exc.errno), str(path)) from exc
        raise
    finally:
        partial.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> Path:
    with atomic_file(path) as partial:
        partial.write_text(text, encoding="utf-8")
    return path


def write_table(frame: pd.DataFrame, path: Path) -> TableRef:
    """Write a frame as Parquet (atomically: a retried task never leaves half a file) and reference it."""
    with atomic_file(path) as partial:
        frame.to_parquet(partial, index=False)
    return TableRef(path=str(path), fingerprint=fingerprint_file(path), rows=len(frame))


def write_jsonl(records: list[dict[str, Any]], path: Path) -> Path:
    """One JSON object per line, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as partial, open(partial, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The objects of a JSON-lines file (blank lines skipped)."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
