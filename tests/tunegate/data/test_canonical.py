"""Canonical rows: the Arrow fast path for whole JSONL files gives exactly the per-record rows, and files it
cannot take go record by record."""

import pandas as pd
import pytest

from tunegate.config.data import SourceConfig
from tunegate.data.canonical import CANONICAL_COLUMNS, canonicalize_records, read_jsonl_table
from tunegate.data.readers import read_records


def per_record_rows(source: SourceConfig, content: bytes) -> pd.DataFrame:
    rows, bad = canonicalize_records(list(read_records(source, content)), source, "d.jsonl")
    assert bad == []
    return pd.DataFrame(rows, columns=CANONICAL_COLUMNS)


@pytest.mark.parametrize(
    "lines, options",
    [
        # blank and whitespace-only lines keep the numbering; CRLF line ends; a null completion; an extra field
        (
            [
                '{"prompt": "a", "completion": "b"}',
                "",
                '{"prompt": "c", "completion": null, "id": 7}',
                "  ",
                '{"prompt": "e", "completion": "f"}',
            ],
            {},
        ),
        # alpaca with and without input; the prompt is instruction + blank line + input only when both are set
        (
            [
                '{"instruction": "i1", "input": "x", "output": "o1"}',
                '{"instruction": "i2", "input": "", "output": "o2"}',
                '{"instruction": "i3", "output": "o3"}',
            ],
            {},
        ),
        (['{"text": "plain"}', '{"text": "more"}'], {}),
        # preference pairs, one without its rejected reply (validation quarantines it: rejected_present)
        (
            [
                '{"prompt": "Where is my parcel?", "chosen": "It ships today.", "rejected": "No idea."}',
                '{"prompt": "Refund?", "chosen": "Issued.", "rejected": null}',
            ],
            {},
        ),
        (
            ['{"question": "q", "category": "billing"}'],
            {"columns": {"question": "prompt", "category": "completion"}, "labelled": True},
        ),
    ],
)
def test_whole_file_jsonl_path_gives_exactly_the_per_record_rows(tmp_path, lines, options):
    content = ("\r\n".join(lines) + "\r\n").encode()
    source = SourceConfig(path=str(tmp_path / "d.jsonl"), **options)
    whole_file = read_jsonl_table(source, content, "d.jsonl")
    assert whole_file is not None
    expected = per_record_rows(source, content)
    assert (
        whole_file.astype(object).where(whole_file.notna(), None).values.tolist()
        == expected.astype(object).where(expected.notna(), None).values.tolist()
    )


@pytest.mark.parametrize(
    "lines",
    [
        ['{"prompt": "a", "completion": "b"}', '{"prompt": "a", "completion": 5}'],  # a type that changes
        ['{"prompt": "a", "completion": "b"}', '{"prompt": "a", "completion": "b"'],  # bad JSON
        ['{"prompt": "a", "completion": "b"}', '{"text": "t"}'],  # two shapes: decided per record
        ['{"messages": [{"role": "user", "content": "hi"}]}'],  # chat
        ['{"prompt": 1, "completion": 2}'],  # consistently not text
    ],
)
def test_files_the_whole_file_path_cannot_take_go_record_by_record(tmp_path, lines):
    source = SourceConfig(path=str(tmp_path / "d.jsonl"))
    assert read_jsonl_table(source, "\n".join(lines).encode(), "d.jsonl") is None
