import json

import pandas as pd
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from tasks.ingest import fingerprint_sources, ingest_sources
from tests.conftest import write_text
from tunegate.config.data import SourceConfig
from tunegate.core.errors import InputError


def ingest(tmp_path, *sources: SourceConfig):
    pinned = fingerprint_sources.fn(list(sources))
    return ingest_sources.fn(list(sources), pinned, str(tmp_path / "home"))


def rejected(result) -> list[dict]:
    with open(result.rejected_path) as handle:
        return [json.loads(line) for line in handle]


def test_jsonl_of_four_shapes_becomes_canonical_rows(tmp_path):
    lines = [
        {"instruction": "Summarize", "input": "A long text", "output": "Short"},
        {"prompt": "2+2?", "completion": "4"},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        {"text": "plain text"},
    ]
    path = write_text(tmp_path / "mixed.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    result = ingest(tmp_path, SourceConfig(path=path))
    table = result.canonical.read()
    assert table["row_id"].tolist() == ["mixed.jsonl:1", "mixed.jsonl:2", "mixed.jsonl:3", "mixed.jsonl:4"]
    assert table["shape"].tolist() == ["alpaca", "prompt_completion", "chat", "text"]
    assert table["prompt"].tolist() == ["Summarize\n\nA long text", "2+2?", "user: hi", ""]
    assert table["completion"].tolist() == ["Short", "4", "hello", "plain text"]
    assert [list(m) if m is not None else None for m in table["messages"]] == [
        None,
        None,
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        None,
    ]
    assert table["source_line"].tolist() == [1, 2, 3, 4]
    assert (result.rows_read, result.rejected, result.canonical.rows) == (4, 0, 4)


def test_csv_with_column_mapping_becomes_prompt_completion(tmp_path):
    path = write_text(
        tmp_path / "t.csv", 'text,category\n"Where, exactly, is my parcel?",shipping\nRefund me,billing\n'
    )
    source = SourceConfig(path=path, columns={"text": "prompt", "category": "completion"}, labelled=True)
    table = ingest(tmp_path, source).canonical.read()
    assert table[["row_id", "prompt", "completion", "labelled"]].values.tolist() == [
        ["t.csv:2", "Where, exactly, is my parcel?", "shipping", True],
        ["t.csv:3", "Refund me", "billing", True],
    ]


def test_json_array_and_parquet_and_fsspec_memory_url(tmp_path):
    records = [{"prompt": "a", "completion": "b"}, {"prompt": "c", "completion": "d"}]
    json_path = write_text(tmp_path / "r.json", json.dumps(records))
    parquet_path = tmp_path / "r.parquet"
    pd.DataFrame(records).to_parquet(parquet_path)
    MemoryFileSystem().pipe("/bucket/r.jsonl", b'{"text": "from memory"}\n')
    result = ingest(
        tmp_path,
        SourceConfig(path=json_path),
        SourceConfig(path=str(parquet_path)),
        SourceConfig(path="memory://bucket/r.jsonl"),
    )
    table = result.canonical.read()
    assert table["row_id"].tolist() == ["r.json:1", "r.json:2", "r.parquet:1", "r.parquet:2", "r.jsonl:1"]
    assert table["completion"].tolist() == ["b", "d", "b", "d", "from memory"]
    assert result.per_source == {json_path: 2, str(parquet_path): 2, "memory://bucket/r.jsonl": 1}


def test_record_problems_are_rejected_with_line_and_reason(tmp_path):
    text = (
        '{"prompt": "ok", "completion": "fine"}\n'
        '{"prompt": "broken", \n'
        '{"prompt": 12, "completion": "x"}\n'
        "[1, 2]\n"
        '{"messages": [{"role": "user"}]}\n'
        '{"unknown": "shape"}\n'
    )
    result = ingest(tmp_path, SourceConfig(path=write_text(tmp_path / "d.jsonl", text)))
    assert result.canonical.rows == 1
    assert [(r["source_line"], r["checks"]) for r in rejected(result)] == [
        (2, ["invalid JSON at column 22: Expecting property name enclosed in double quotes"]),
        (3, ["field 'prompt': expected a string, got int"]),
        (4, ["expected a JSON object, got list"]),
        (5, ["field 'messages[0]': expected an object with role and content"]),
        (
            6,
            [
                "record of unknown shape with fields ['unknown']; expected prompt+chosen+rejected | messages | "
                "instruction+output | prompt+completion | text (map other names with `columns:`)"
            ],
        ),
    ]
    assert rejected(result)[1]["raw"] == '{"prompt": 12, "completion": "x"}'
    assert result.rows_read == 6


def test_csv_rows_with_wrong_field_count_are_rejected(tmp_path):
    path = write_text(tmp_path / "t.csv", "prompt,completion\na,b\nonly one field\nx,y,z\n")
    result = ingest(tmp_path, SourceConfig(path=path))
    assert [(r["source_line"], r["checks"]) for r in rejected(result)] == [
        (3, ["expected 2 fields (prompt, completion), got 1"]),
        (4, ["expected 2 fields (prompt, completion), got 3"]),
    ]


@pytest.mark.parametrize(
    ("name", "content", "source_options", "message"),
    [
        ("missing.jsonl", None, {}, "missing.jsonl: file not found"),
        ("empty.jsonl", b"  \n", {}, "empty.jsonl: empty file, expected at least one record"),
        ("data.txt", b"hello", {}, "data.txt: unknown format '.txt'; expected one of .jsonl"),
        ("latin.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n', {}, "latin.jsonl: line 2: not UTF-8 (byte 0xe9)"),
        (
            "t.csv",
            b"body,label\nx,y\n",
            {"columns": {"body": "prompt"}},
            "t.csv: line 1 (header): missing column 'completion' for shape prompt_completion",
        ),
        ("t2.csv", b"foo,bar\nx,y\n", {}, "t2.csv: line 1 (header): columns ['foo', 'bar'] match no record shape"),
        ("shape.jsonl", b'{"q": "x", "a": "y"}\n', {}, "shape.jsonl: line 1: record of unknown shape with fields"),
        ("arr.json", b'{"prompt": "x"}', {}, "arr.json: line 1: expected a JSON array of records, got a dict"),
        ("bad.json", b'[{"prompt": "x"},\n{', {}, "bad.json: line 2: invalid JSON"),
    ],
)
def test_file_level_problems_are_one_line_input_errors(tmp_path, name, content, source_options, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as error:
        ingest(tmp_path, SourceConfig(path=str(path), **source_options))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_unreadable_url_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match=r"nosuchscheme://x/data.jsonl: cannot open this URL"):
        ingest(tmp_path, SourceConfig(path="nosuchscheme://x/data.jsonl"))


def test_ingest_is_idempotent_and_content_addressed(tmp_path):
    path = write_text(tmp_path / "d.jsonl", '{"text": "a"}\n')
    first = ingest(tmp_path, SourceConfig(path=path))
    again = ingest(tmp_path, SourceConfig(path=path))
    assert (first.canonical.path, first.canonical.fingerprint) == (again.canonical.path, again.canonical.fingerprint)
    write_text(tmp_path / "d.jsonl", '{"text": "b"}\n')
    changed = ingest(tmp_path, SourceConfig(path=path))
    assert changed.canonical.path != first.canonical.path


def test_preference_pairs_keep_the_chosen_reply_as_completion_and_the_rejected_beside_it(tmp_path):
    csv = (
        "question,good,bad\n"
        "Where is my parcel?,It ships today.,No idea.\n"
        "Refund?,Issued to your card.,Ask someone else.\n"
    )
    mapping = {"question": "prompt", "good": "chosen", "bad": "rejected"}
    jsonl = (
        '{"prompt": "Hi", "chosen": "Hello! How can I help?", "rejected": "What."}\n'
        '{"prompt": "Bye", "chosen": "Goodbye!", "rejected": 3}\n'
    )
    result = ingest(
        tmp_path,
        SourceConfig(path=write_text(tmp_path / "pairs.csv", csv), columns=mapping),
        SourceConfig(path=write_text(tmp_path / "pairs.jsonl", jsonl)),
    )
    table = result.canonical.read()
    assert table[["row_id", "shape", "prompt", "completion", "rejected"]].values.tolist() == [
        ["pairs.csv:2", "preference", "Where is my parcel?", "It ships today.", "No idea."],
        ["pairs.csv:3", "preference", "Refund?", "Issued to your card.", "Ask someone else."],
        ["pairs.jsonl:1", "preference", "Hi", "Hello! How can I help?", "What."],
    ]
    assert [(r["row_id"], r["checks"]) for r in rejected(result)] == [
        ("pairs.jsonl:2", ["field 'rejected': expected a string, got int"])
    ]


def test_chat_shaped_pairs_keep_their_conversation_and_take_replies_as_text_or_assistant_messages(tmp_path):
    turns = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Where is my parcel?"}]
    jsonl = "\n".join(
        json.dumps(record)
        for record in (
            {"messages": turns, "chosen": [{"role": "assistant", "content": "On its way."}], "rejected": "No idea."},
            {"messages": turns, "chosen": {"role": "assistant", "content": "Today."}, "rejected": {"role": "user"}},
        )
    )
    result = ingest(tmp_path, SourceConfig(path=write_text(tmp_path / "pairs.jsonl", jsonl + "\n")))
    table = result.canonical.read()
    assert table[["row_id", "shape", "prompt", "completion", "rejected"]].values.tolist() == [
        ["pairs.jsonl:1", "preference", "system: Be kind.\nuser: Where is my parcel?", "On its way.", "No idea."]
    ]
    assert [dict(m) for m in table["messages"][0]] == turns
    assert [(r["row_id"], r["checks"]) for r in rejected(result)] == [
        ("pairs.jsonl:2", ["field 'rejected': expected a string, got dict"])
    ]
