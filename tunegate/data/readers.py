"""Reading raw sources: the bytes of a local file or fsspec URL (refusing a FIFO or a file that changes while it
is read), the format from the extension or the config, and each format's records (JSONL, JSON array, CSV,
Parquet) with the file and line they came from; file-level problems raise one-line InputErrors."""

from __future__ import annotations

import csv
import gc
import io
import json
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import fsspec
import pandas as pd

from tunegate.config.data import SourceConfig
from tunegate.core.errors import InputError
from tunegate.data.record_shapes import (
    KNOWN_SHAPES_HINT,
    SHAPES,
    detect_shape,
)

EXTENSION_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


@dataclass
class RawRecord:
    """One record as read from a file, before canonicalization."""

    line: int
    fields: dict[str, Any] | None
    raw: str
    problem: str | None = None


def open_source_bytes(path: str) -> bytes:
    """Read a whole source through fsspec; a missing or unreadable location is a one-line InputError, and so is
    a local stream (a FIFO or device: reading it would block or never end) or a file that grows while read."""
    local = local_path(path)
    before = regular_file_stat(local) if local else None
    try:
        with fsspec.open(path, "rb") as handle:
            content = handle.read()
    except FileNotFoundError as exc:
        raise InputError(f"{path}: file not found") from exc
    except IsADirectoryError as exc:
        raise InputError(f"{path}: is a directory, expected a data file") from exc
    except (ValueError, ImportError) as exc:
        raise InputError(f"{path}: cannot open this URL ({exc})") from exc
    if before is not None:
        after = os.stat(local)
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or len(content) != after.st_size:
            raise InputError(
                f"{path}: the file changed while it was read ({before.st_size} -> {after.st_size} bytes); "
                "point the config at a finished file"
            )
    return content


def local_path(path: str) -> str | None:
    """The local file a source path names (plain or file://), or None for a remote URL."""
    if path.startswith("file://"):
        return path.removeprefix("file://")
    return None if "://" in path else path


def regular_file_stat(path: str) -> os.stat_result | None:
    """The file's stat if it exists; a FIFO, socket or device is refused before it is opened."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(status.st_mode) and not stat.S_ISDIR(status.st_mode):
        raise InputError(f"{path}: not a regular file (a FIFO, socket or device); write the data to a file first")
    return status if stat.S_ISREG(status.st_mode) else None


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while records are built: a million small dicts trigger it again
    and again over an ever larger heap (1M JSONL records: 40.8 s with it, 27.2 s without)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def detect_format(source: SourceConfig) -> str:
    if source.format != "auto":
        return source.format
    suffix = PurePosixPath(source.path.split("?", 1)[0]).suffix.lower()
    if suffix not in EXTENSION_FORMATS:
        raise InputError(
            f"{source.path}: unknown format {suffix or '(no extension)'!r}; expected one of "
            f"{', '.join(EXTENSION_FORMATS)} or set format: jsonl|json|csv|parquet"
        )
    return EXTENSION_FORMATS[suffix]


def read_records(source: SourceConfig, content: bytes) -> Iterator[RawRecord]:
    """Yield the records of one file with their line (or record/row) number."""
    file_format = detect_format(source)
    if not content.strip():
        raise InputError(f"{source.path}: empty file, expected at least one record")
    if file_format == "parquet":
        yield from read_parquet_records(source.path, content)
        return
    text = decode_utf8(source.path, content)
    reader = {"jsonl": read_jsonl_records, "json": read_json_array_records, "csv": read_csv_records}[file_format]
    yield from reader(source, text)


def decode_utf8(path: str, content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = content[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{path}: line {line}: not UTF-8 (byte 0x{content[exc.start]:02x}); expected UTF-8 text"
        ) from exc


def read_jsonl_records(source: SourceConfig, text: str) -> Iterator[RawRecord]:
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield RawRecord(line_number, None, line, f"invalid JSON at column {exc.colno}: {exc.msg}")
            continue
        if not isinstance(value, dict):
            yield RawRecord(line_number, None, line, f"expected a JSON object, got {type(value).__name__}")
            continue
        yield RawRecord(line_number, value, line)


def read_json_array_records(source: SourceConfig, text: str) -> Iterator[RawRecord]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{source.path}: line {exc.lineno}: invalid JSON ({exc.msg}); expected a JSON array of records"
        ) from exc
    if not isinstance(document, list):
        raise InputError(
            f"{source.path}: line 1: expected a JSON array of records, got a {type(document).__name__}"
            " (one object per line? use the .jsonl extension or format: jsonl)"
        )
    for index, value in enumerate(document, start=1):
        raw = json.dumps(value, ensure_ascii=False)
        if not isinstance(value, dict):
            yield RawRecord(index, None, raw, f"record {index}: expected a JSON object, got {type(value).__name__}")
        else:
            yield RawRecord(index, value, raw)


def read_csv_records(source: SourceConfig, text: str) -> Iterator[RawRecord]:
    """The records of a CSV file with the line each starts on. A record the parser cannot read (a field over the
    csv module's limit) and a line whose stray quote would swallow the lines after it are quarantined alone, and
    reading goes on at the next line: one broken line never costs the valid rows behind it."""
    lines = PhysicalLines(list(io.StringIO(text, newline="")))
    reader = csv.reader(lines)
    header = next(reader)
    check_csv_header(source, header)
    while lines.position < len(lines.items):
        start = lines.position
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # the parser gave up on this record: quarantine its first line, go on after it
            lines.position, reader = start + 1, csv.reader(lines)
            yield RawRecord(start + 1, None, json.dumps(lines.items[start][:300]), f"unreadable CSV record: {exc}")
            continue
        if lines.position - start > 1 and swallowed_lines(lines.items[start : lines.position], len(header)):
            lines.position, reader = start + 1, csv.reader(lines)
            problem = "unterminated quote: this line opens a quoted field that never closes on it"
            yield RawRecord(start + 1, None, json.dumps(lines.items[start][:300]), problem)
            continue
        if not values:
            continue
        raw = json.dumps(values, ensure_ascii=False)
        if len(values) != len(header):
            problem = f"expected {len(header)} fields ({', '.join(header)}), got {len(values)}"
            yield RawRecord(start + 1, None, raw, problem)
            continue
        yield RawRecord(start + 1, dict(zip(header, values, strict=True)), raw)


class PhysicalLines:
    """A file's lines as an iterator the csv module reads from, whose position says where each record ended (a
    fresh reader per record starts exactly at a line)."""

    def __init__(self, items: list[str]) -> None:
        self.items, self.position = items, 0

    def __iter__(self) -> PhysicalLines:
        return self

    def __next__(self) -> str:
        if self.position >= len(self.items):
            raise StopIteration
        self.position += 1
        return self.items[self.position - 1]


# One well-formed CSV field: quoted (quotes inside doubled) or unquoted without any quote; a whole record is these
# separated by commas. A real continuation of a quoted field holds its closing quote mid-field, which this refuses.
CSV_FIELD = r'(?:"(?:[^"]|"")*"|[^",\r\n]*)'
WELL_FORMED_RECORD = re.compile(rf"{CSV_FIELD}(?:,{CSV_FIELD})*\r?\n?")


def swallowed_lines(record_lines: list[str], fields: int) -> bool:
    """Whether a record that spans lines is a stray quote swallowing the records after it, not a quoted field with
    line breaks: every line after the first is, alone, a well-formed record with the header's field count (the
    last one may instead open a quoted field of its own). A real quoted field's last line holds the closing quote
    mid-field, which alone is not well-formed."""

    def whole_record(line: str) -> bool:
        return WELL_FORMED_RECORD.fullmatch(line) is not None and len(next(csv.reader([line]), [])) == fields

    *middle, last = record_lines[1:]
    return all(whole_record(line) for line in middle) and (whole_record(last) or last.startswith('"'))


def check_csv_header(source: SourceConfig, header: list[str]) -> None:
    """A CSV's columns are known up front, so a missing required column is a file-level error."""
    mapped = [source.columns.get(name, name) for name in header]
    shape = source.shape if source.shape != "auto" else detect_shape(dict.fromkeys(mapped, ""))
    if shape is None:
        raise InputError(
            f"{source.path}: line 1 (header): columns {header} match no record shape; expected "
            f"{KNOWN_SHAPES_HINT}, or map your columns with `columns:` (e.g. text: prompt, category: completion)"
        )
    missing = [name for name in SHAPES[shape].required if name not in mapped]
    if missing:
        raise InputError(
            f"{source.path}: line 1 (header): missing column {missing[0]!r} for shape {shape}; "
            f"found {header} (mapping {source.columns or 'none'})"
        )


def read_parquet_records(path: str, content: bytes) -> Iterator[RawRecord]:
    try:
        frame = pd.read_parquet(io.BytesIO(content))
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from exc
    if frame.empty:
        raise InputError(f"{path}: empty file, expected at least one record")
    for index, record in enumerate(frame.to_dict("records"), start=1):
        fields = {k: to_plain(v) for k, v in record.items()}
        yield RawRecord(index, fields, json.dumps(fields, ensure_ascii=False, default=str))


def to_plain(value: Any) -> Any:
    """Parquet lists arrive as numpy arrays; turn them back into lists so shapes are checked uniformly."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return value
