"""Canonical rows: every record mapped to the columns of CANONICAL_COLUMNS by its detected shape (alpaca,
prompt/completion, chat, text, preference), or rejected with the file, line and reason; and the Arrow fast path
that canonicalizes a whole single-shape JSONL file at once."""

from __future__ import annotations

import codecs
import io
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from tunegate.config.data import SourceConfig
from tunegate.core.errors import InputError
from tunegate.data.readers import RawRecord
from tunegate.data.record_shapes import (
    KNOWN_SHAPES_HINT,
    RECORD_SHAPES,
    SHAPES,
    TEXT_FIELDS,
    detect_shape,
    reply_text,
    text_record_fields,
)

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
