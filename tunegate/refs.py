"""References passed between tasks: a path, a content fingerprint and counts, never the data itself."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pydantic import BaseModel, Field

from tunegate.fingerprint import fingerprint_file


class TableRef(BaseModel):
    """A Parquet table a stage wrote."""

    path: str = Field(description="Absolute path of the Parquet file.")
    fingerprint: str = Field(description="sha256 of the file's bytes.")
    rows: int = Field(description="Number of rows in the table.")

    def read(self, columns: list[str] | None = None) -> pd.DataFrame:
        return pd.read_parquet(self.path, columns=columns)


def write_table(frame: pd.DataFrame, path: Path) -> TableRef:
    """Write a frame as Parquet (atomically: a retried task never leaves half a file) and reference it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    frame.to_parquet(partial, index=False)
    partial.replace(path)
    return TableRef(path=str(path), fingerprint=fingerprint_file(path), rows=len(frame))
