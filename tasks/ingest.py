"""Ingest: read raw instruction data in any common format into one canonical Parquet table.

Reads each configured source (JSONL, JSON array, CSV, Parquet; local path or fsspec URL), maps
columns, detects the record shape and writes `<home>/data/ingest-<key>/canonical.parquet` with the
columns of CANONICAL_COLUMNS, plus `rejected.jsonl` for records that could not be read (a bad JSON
line, a wrong-typed field, a CSV row with the wrong number of fields). File-level problems (missing,
empty, not UTF-8, unknown format, no usable column) raise InputError naming the file and line.
"""

from __future__ import annotations

import codecs
import csv
import gc
import io
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
from prefect import task

from tunegate.caching import stage_cache_policy
from tunegate.config import SourceConfig
from tunegate.errors import InputError
from tunegate.fingerprint import fingerprint_bytes, fingerprint_file, fingerprint_value
from tunegate.record_shapes import (
    KNOWN_SHAPES_HINT,
    RECORD_SHAPES,
    SHAPES,
    TEXT_FIELDS,
    detect_shape,
    reply_text,
    text_record_fields,
)
from tunegate.refs import write_jsonl, write_table
from tunegate.retrying import RETRY_DELAYS_SECONDS, retry_unless_input_error
from tunegate.stage_results import IngestResult, SourceFingerprint
from tunegate.stages import stage_directory

CANONICAL_COLUMNS = [
    "row_id",
    "source",
    "source_line",
    "shape",
    "labelled",
    "prompt",
    "completion",
    "messages",
    "rejected",
    "raw",
]
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


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=retry_unless_input_error)
def fingerprint_sources(sources: list[SourceConfig]) -> list[SourceFingerprint]:
    """Fingerprint each source's bytes: the cache key of everything downstream."""
    pinned = []
    for source in sources:
        content = open_source_bytes(source.path)
        pinned.append(SourceFingerprint(path=source.path, fingerprint=fingerprint_bytes([content]), bytes=len(content)))
    return pinned


@task(
    cache_policy=stage_cache_policy(),
    retries=3,
    retry_delay_seconds=RETRY_DELAYS_SECONDS,
    retry_condition_fn=retry_unless_input_error,
)
def ingest_sources(sources: list[SourceConfig], pinned: list[SourceFingerprint], home: str) -> IngestResult:
    """Read every source into one canonical table; unreadable records go to rejected.jsonl."""
    out_dir = stage_directory(
        home, "data/ingest", __file__, fingerprint_value([p.model_dump() for p in pinned]), fingerprint_value(sources)
    )
    row_ids = source_row_id_prefixes(sources)
    canonical_parts, rejected, per_source = [], [], {}
    for source, prefix, pin in zip(sources, row_ids, pinned, strict=True):
        content = open_source_bytes(source.path)
        if fingerprint_bytes([content]) != pin.fingerprint:
            # A retry would compare against the same stale fingerprint: this needs a new run.
            raise InputError(f"{source.path}: file changed while the run was reading it; start the run again")
        whole_file = read_jsonl_table(source, content, prefix) if detect_format(source) == "jsonl" else None
        if whole_file is not None:
            canonical_parts.append(whole_file)
            per_source[source.path] = len(whole_file)
            continue
        with gc_paused():
            records = list(read_records(source, content))
            rows, bad = canonicalize_records(records, source, prefix)
        canonical_parts.append(pd.DataFrame(rows, columns=CANONICAL_COLUMNS))
        rejected.extend(bad)
        per_source[source.path] = len(records)
    canonical = pd.concat(canonical_parts, ignore_index=True)
    canonical["source_line"] = canonical["source_line"].astype("int64")
    table = write_table(canonical, out_dir / "canonical.parquet")
    rejected_path = write_jsonl(rejected, out_dir / "rejected.jsonl")
    return IngestResult(
        canonical=table,
        rejected_path=str(rejected_path),
        rejected_fingerprint=fingerprint_file(rejected_path),
        rows_read=sum(per_source.values()),
        rejected=len(rejected),
        per_source=per_source,
    )


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


def read_jsonl_table(source: SourceConfig, content: bytes, prefix: str) -> pd.DataFrame | None:
    """Canonical rows of a JSONL file parsed whole by Arrow, or None to read it record by record.

    The common case (every line a JSON object of one text shape, its text fields strings) takes 12.8 s per
    million rows this way (fingerprint and Parquet write included) against 40.8 s record by record. Any
    line that is not (bad JSON, a field whose type changes, a record of another shape, chat messages)
    sends the whole file down the per-record path, which names each bad line.
    """
    if not content or content.isspace() or content.startswith(codecs.BOM_UTF8):
        return None
    try:
        table = pa_json.read_json(io.BytesIO(content))
        lines = utf8_lines(content)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    names = [source.columns.get(name, name) for name in table.column_names]
    if len(set(names)) != len(names):
        return None
    table = table.rename_columns(names)
    shape = single_text_shape(source, table)
    if shape is None:
        return None
    # Arrow skips blank lines; numbering counts them, as the per-record path does.
    blank = pc.or_(pc.equal(pc.binary_length(lines), 0), pc.ascii_is_space(lines)).to_numpy(zero_copy_only=False)
    line_numbers = np.flatnonzero(~blank) + 1
    if len(line_numbers) != table.num_rows:
        return None
    prompt, completion, rejected = text_shape_fields(shape, table)
    return pd.DataFrame(
        {
            "row_id": [f"{prefix}:{line}" for line in line_numbers.tolist()],
            "source": source.path,
            "source_line": line_numbers,
            "shape": shape,
            "labelled": source.labelled,
            "prompt": prompt,
            "completion": completion,
            "messages": None,
            "rejected": rejected,
            "raw": (lines.filter(pa.array(~blank)) if blank.any() else lines).to_pandas(),
        },
        columns=CANONICAL_COLUMNS,
    )


def utf8_lines(content: bytes) -> pa.Array:
    """The file's lines as Arrow strings, without line ends; ArrowInvalid if it is not UTF-8.

    Split and checked in Arrow: decoding 1 GB into one Python string first took 1.7 s and a copy.
    """
    lines = pc.list_flatten(pc.split_pattern(pa.array([content], pa.large_binary()), b"\n"))
    if content.endswith(b"\n"):
        lines = lines.slice(0, len(lines) - 1)
    lines = lines.cast(pa.large_string())  # validates UTF-8
    return pc.utf8_rtrim(lines, characters="\r") if b"\r" in content else lines


def single_text_shape(source: SourceConfig, table: pa.Table) -> str | None:
    """The one text shape all records of `table` have (as detect_shape finds it per record), or None."""
    present = set(table.column_names)
    text_typed = all(is_arrow_string(table[name].type) for name in TEXT_FIELDS if name in present)
    if not text_typed or "messages" in present or source.shape == "chat":
        return None
    if source.shape != "auto":
        return source.shape
    for shape in RECORD_SHAPES:
        keys = shape.detected_by
        if shape.name == "chat":  # ruled out above
            continue
        # A null in Arrow may be a key some record lacks; per record, that record could be another shape.
        if all(name in present and table[name].null_count == 0 for name in keys):
            return shape.name
        if any(name in present for name in keys):
            return None
    return None


def is_arrow_string(data_type: pa.DataType) -> bool:
    return pa.types.is_string(data_type) or pa.types.is_large_string(data_type)


def text_shape_fields(shape: str, table: pa.Table) -> tuple[Any, Any, Any]:
    """(prompt, completion, rejected) columns for a text shape, as canonical_fields builds them per record."""

    def column(name: str) -> pd.Series:
        return table[name].to_pandas() if name in table.column_names else pd.Series([None] * table.num_rows)

    spec = SHAPES[shape]
    parts = [column(name) for name in spec.prompt_from]
    rejected = column(spec.rejected_from) if spec.rejected_from else None
    return vectorized_prompt(parts), column(spec.completion_from), rejected


def vectorized_prompt(parts: list[pd.Series]) -> Any:
    """`joined_prompt` over whole columns."""
    if len(parts) <= 1:
        return parts[0] if parts else ""
    every = np.logical_and.reduce([part.fillna("").astype(bool) for part in parts])
    return parts[0].where(~every, parts[0].str.cat(parts[1:], sep="\n\n"))


def source_row_id_prefixes(sources: list[SourceConfig]) -> list[str]:
    """Row ids read `<file name>:<line>`; files that share a name are told apart by their position."""
    names = [PurePosixPath(s.path.rstrip("/")).name for s in sources]
    return [name if names.count(name) == 1 else f"{index}.{name}" for index, name in enumerate(names)]


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
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader)
    check_csv_header(source, header)
    line_start = reader.line_num + 1
    for values in reader:
        line = line_start
        line_start = reader.line_num + 1
        if not values:
            continue
        raw = json.dumps(values, ensure_ascii=False)
        if len(values) != len(header):
            problem = f"expected {len(header)} fields ({', '.join(header)}), got {len(values)}"
            yield RawRecord(line, None, raw, problem)
            continue
        yield RawRecord(line, dict(zip(header, values, strict=True)), raw)


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


def canonicalize_records(
    records: list[RawRecord], source: SourceConfig, prefix: str
) -> tuple[list[list[Any]], list[dict[str, Any]]]:
    """Turn raw records into canonical rows; every record lands in exactly one of the two lists."""
    rows, rejected = [], []
    known_shape_seen = False
    for record in records:
        if record.problem is not None:
            rejected.append(rejection(source.path, prefix, record, record.problem))
            continue
        fields = {source.columns.get(k, k): v for k, v in record.fields.items()}
        shape = source.shape if source.shape != "auto" else detect_shape(fields)
        if shape is None:
            rejected.append(rejection(source.path, prefix, record, unknown_shape_message(fields)))
            continue
        known_shape_seen = True
        problem, canonical = canonical_fields(shape, fields)
        if problem:
            rejected.append(rejection(source.path, prefix, record, problem))
            continue
        row_id = f"{prefix}:{record.line}"
        rows.append([row_id, source.path, record.line, shape, source.labelled, *canonical, record.raw])
    readable = [r for r in records if r.fields is not None]
    if readable and not known_shape_seen:
        # Not one record has a known shape: the file, not a record, is wrong (or needs a mapping).
        raise InputError(f"{source.path}: line {readable[0].line}: {unknown_shape_message(readable[0].fields)}")
    return rows, rejected


def unknown_shape_message(fields: dict[str, Any]) -> str:
    return (
        f"record of unknown shape with fields {sorted(fields)}; expected {KNOWN_SHAPES_HINT}"
        " (map other names with `columns:`)"
    )


def rejection(path: str, prefix: str, record: RawRecord, problem: str) -> dict[str, Any]:
    return {
        "row_id": f"{prefix}:{record.line}",
        "source": path,
        "source_line": record.line,
        "stage": "ingest",
        "checks": [problem],
        "raw": record.raw,
    }


def canonical_fields(shape: str, fields: dict[str, Any]) -> tuple[str | None, list[Any]]:
    """(problem, [prompt, completion, messages, rejected]) for one record of a known shape."""
    if shape == "preference":
        fields = {**fields, **{name: reply_text(fields.get(name)) for name in ("chosen", "rejected") if name in fields}}
    for name in TEXT_FIELDS:
        value = fields.get(name)
        if value is not None and not isinstance(value, str):
            return f"field {name!r}: expected a string, got {type(value).__name__}", []
    if shape == "chat":
        return chat_fields(fields.get("messages"))
    if shape == "preference" and "messages" in fields:
        return chat_pair_fields(fields)
    return None, text_record_fields(shape, fields)


def chat_pair_fields(fields: dict[str, Any]) -> tuple[str | None, list[Any]]:
    """A chat-shaped preference pair: the conversation so far (its prompt rendered as for chat rows), the chosen
    reply as completion, the rejected beside it."""
    problem, canonical = chat_fields(fields["messages"])
    if problem:
        return problem, []
    turns = canonical[2]
    prompt = "\n".join(f"{m['role']}: {m['content']}" for m in turns)  # every turn: the reply comes after them
    return None, [prompt, fields.get("chosen"), turns, fields.get("rejected")]


def chat_fields(messages: Any) -> tuple[str | None, list[Any]]:
    """Chat rows keep their messages; prompt renders the turns before the last, completion is the last."""
    if not isinstance(messages, list) or not messages:
        return "field 'messages': expected a non-empty list of {role, content} objects", []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not {"role", "content"} <= set(message):
            return f"field 'messages[{index}]': expected an object with role and content", []
        for key in ("role", "content"):
            if not isinstance(message[key], str):
                kind = type(message[key]).__name__
                return f"field 'messages[{index}].{key}': expected a string, got {kind}", []
    turns = [{"role": m["role"], "content": m["content"]} for m in messages]
    prompt = "\n".join(f"{m['role']}: {m['content']}" for m in turns[:-1])
    completion = turns[-1]["content"] if turns[-1]["role"] == "assistant" else None
    return None, [prompt, completion, turns, None]
