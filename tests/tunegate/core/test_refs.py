"""References between tasks: a table or a directory is intact only while its recorded fingerprint holds; writes are
atomic (no partial file is left, an OS error names the file)."""

from __future__ import annotations

import errno

import pandas as pd
import pytest

from tunegate.core.refs import AdapterRef, atomic_file, output_problems, read_jsonl, write_jsonl, write_table


def test_a_table_reference_knows_when_its_file_changed_or_went(tmp_path):
    table = write_table(pd.DataFrame({"a": [1, 2, 3]}), tmp_path / "t.parquet")
    assert (table.rows, table.read()["a"].tolist(), table.output_problems()) == (3, [1, 2, 3], [])
    (tmp_path / "t.parquet").write_bytes(b"other bytes")
    (problem,) = table.output_problems()
    assert problem.startswith(f"{tmp_path / 't.parquet'} changed (sha256 ") and problem.endswith(
        f"recorded {table.fingerprint[:12]})"
    )
    (tmp_path / "t.parquet").unlink()
    assert table.output_problems() == [f"{tmp_path / 't.parquet'} is missing"]


def test_problems_are_found_anywhere_in_a_nested_result(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "weights.safetensors").write_bytes(b"w")
    adapter = AdapterRef.of(tmp_path / "adapter", "lora")
    table = write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.parquet")
    assert output_problems({"runs": [adapter, (table,)]}) == []
    (tmp_path / "adapter" / "extra.json").write_text("{}")
    (tmp_path / "t.parquet").unlink()
    found = output_problems({"runs": [adapter, (table,)]})
    assert [p.split(" ")[1] for p in found] == ["changed", "is"]


def test_an_interrupted_write_leaves_the_old_file_and_no_partial(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(target) as partial:
        partial.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_an_os_error_names_the_file_being_written(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(OSError) as raised, atomic_file(target):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, str(target))


def test_jsonl_round_trips_and_skips_blank_lines(tmp_path):
    path = write_jsonl([{"a": 1}, {"b": "é"}], tmp_path / "r.jsonl")
    path.write_text(path.read_text() + "\n")
    assert read_jsonl(path) == [{"a": 1}, {"b": "é"}]
