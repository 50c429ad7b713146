"""Reading raw sources: each format's records with the line they start on, a broken record quarantined alone with
its reason, and file-level problems as one line naming the file and line."""

from __future__ import annotations

import io
import os

import pandas as pd
import pytest

from tunegate.config.data import SourceConfig
from tunegate.core.errors import InputError
from tunegate.data.readers import detect_format, open_source_bytes, read_records


def records(path: str, text: str | bytes, **options) -> list[tuple[int, dict | None, str | None]]:
    content = text.encode() if isinstance(text, str) else text
    return [(r.line, r.fields, r.problem) for r in read_records(SourceConfig(path=path, **options), content)]


def refused(path: str, content: bytes, **options) -> str:
    with pytest.raises(InputError) as error:
        list(read_records(SourceConfig(path=path, **options), content))
    return str(error.value)


def test_the_format_comes_from_the_extension_or_the_config():
    assert detect_format(SourceConfig(path="s3://bucket/rows.JSONL?versionId=3")) == "jsonl"
    assert detect_format(SourceConfig(path="rows.ndjson")) == "jsonl"
    assert detect_format(SourceConfig(path="rows.txt", format="csv")) == "csv"
    with pytest.raises(InputError, match=r"^rows.txt: unknown format '.txt'; expected one of \.jsonl, "):
        detect_format(SourceConfig(path="rows.txt"))


def test_jsonl_records_keep_their_line_and_a_bad_line_is_quarantined_alone():
    text = '{"prompt": "a", "completion": "b"}\n\nnot json\n[1, 2]\n{"prompt": "c", "completion": "d"}\n'
    assert records("rows.jsonl", text) == [
        (1, {"prompt": "a", "completion": "b"}, None),
        (3, None, "invalid JSON at column 1: Expecting value"),
        (4, None, "expected a JSON object, got list"),
        (5, {"prompt": "c", "completion": "d"}, None),
    ]


def test_a_json_array_numbers_its_records_and_refuses_an_object():
    assert records("rows.json", '[{"text": "a"}, "b"]') == [
        (1, {"text": "a"}, None),
        (2, None, "record 2: expected a JSON object, got str"),
    ]
    assert refused("rows.json", b'{"text": "a"}') == (
        "rows.json: line 1: expected a JSON array of records, got a dict (one object per line? use the .jsonl "
        "extension or format: jsonl)"
    )
    assert refused("rows.json", b'[{"text": "a"},\n{"text": }]').startswith("rows.json: line 2: invalid JSON (")


def test_csv_records_start_on_their_line_with_quoted_line_breaks_kept():
    text = 'prompt,completion\n"two\nlines",a\nshort\nplain,b\n'
    assert records("rows.csv", text) == [
        (2, {"prompt": "two\nlines", "completion": "a"}, None),
        (4, None, "expected 2 fields (prompt, completion), got 1"),
        (5, {"prompt": "plain", "completion": "b"}, None),
    ]


def test_a_stray_csv_quote_costs_its_own_line_not_the_rows_after_it():
    text = 'prompt,completion\n"unclosed,a\nsecond,b\nthird,c\n'
    assert records("rows.csv", text) == [
        (2, None, "unterminated quote: this line opens a quoted field that never closes on it"),
        (3, {"prompt": "second", "completion": "b"}, None),
        (4, {"prompt": "third", "completion": "c"}, None),
    ]


def test_a_csv_header_that_fits_no_shape_or_misses_a_column_is_one_line():
    assert refused("rows.csv", b"text,category\nhello,billing\n", shape="prompt_completion") == (
        "rows.csv: line 1 (header): missing column 'prompt' for shape prompt_completion; found ['text', "
        "'category'] (mapping none)"
    )
    assert refused("rows.csv", b"a,b\n1,2\n").startswith("rows.csv: line 1 (header): columns ['a', 'b'] match no")
    mapped = records("rows.csv", "text,category\nhello,billing\n", columns={"text": "prompt", "category": "completion"})
    assert mapped == [(2, {"text": "hello", "category": "billing"}, None)]  # mapped to canonical names later


def test_an_empty_file_and_a_non_utf8_byte_are_one_line_naming_the_line():
    assert refused("rows.jsonl", b"  \n") == "rows.jsonl: empty file, expected at least one record"
    assert refused("rows.jsonl", b'{"text": "a"}\n{"text": "caf\xe9"}\n') == (
        "rows.jsonl: line 2: not UTF-8 (byte 0xe9); expected UTF-8 text"
    )
    assert records("rows.jsonl", b'\xef\xbb\xbf{"text": "a"}\n') == [(1, {"text": "a"}, None)]  # a BOM is fine


def test_parquet_rows_are_numbered_and_lists_come_back_as_lists():
    buffer = io.BytesIO()
    pd.DataFrame({"messages": [[{"role": "user", "content": "hi"}]], "n": [1]}).to_parquet(buffer)
    assert records("rows.parquet", buffer.getvalue()) == [
        (1, {"messages": [{"role": "user", "content": "hi"}], "n": 1}, None)
    ]
    assert refused("rows.parquet", b"PAR1 not really").startswith("rows.parquet: not a readable Parquet file (")


def test_a_missing_file_a_directory_and_a_fifo_are_refused_before_reading(tmp_path):
    with pytest.raises(InputError, match=r"/missing.jsonl: file not found$"):
        open_source_bytes(str(tmp_path / "missing.jsonl"))
    with pytest.raises(InputError, match=r": is a directory, expected a data file$"):
        open_source_bytes(str(tmp_path))
    fifo = tmp_path / "rows.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=r"rows.jsonl: not a regular file \(a FIFO, socket or device\)"):
        open_source_bytes(str(fifo))
    (tmp_path / "ok.jsonl").write_text('{"text": "a"}\n')
    assert open_source_bytes(f"file://{tmp_path}/ok.jsonl") == b'{"text": "a"}\n'
