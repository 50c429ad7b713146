"""Running a stage from a flow: timed, a cache hit recorded, a cache hit whose output is gone run again, and
stage directories keyed on code and inputs. A real Prefect task on the session's real Prefect server."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from prefect import flow, task

from tunegate.core.refs import TableRef, write_table
from tunegate.runtime.caching import stage_cache_policy
from tunegate.runtime.stages import StageLog, stage_directory

CALLS: list[int] = []


@task(cache_policy=stage_cache_policy())
def squares(count: int, home: str) -> TableRef:
    """A stage that writes one table under home."""
    CALLS.append(count)
    frame = pd.DataFrame({"n": range(count), "square": [n * n for n in range(count)]})
    return write_table(frame, stage_directory(home, "squares", __file__, str(count)) / "squares.parquet")


@flow
def run_squares_twice(home: str, remove_between: bool) -> StageLog:
    stages = StageLog(home)
    first = stages.run("first", squares, count=4, home=home)
    if remove_between:
        Path(first.path).unlink()
    stages.run("second", squares, count=4, home=home)
    return stages


def test_a_second_run_with_the_same_inputs_is_served_from_cache(tmp_path):
    CALLS.clear()
    stages = run_squares_twice(str(tmp_path), remove_between=False)
    assert CALLS == [4]
    assert list(stages.timings) == ["first", "second"] and stages.cache_hits == ["second"]
    assert len(list((tmp_path / "cache" / "results").iterdir())) == 1  # one record, under home


def test_a_cache_hit_whose_output_was_deleted_runs_the_stage_again(tmp_path):
    CALLS.clear()
    stages = run_squares_twice(str(tmp_path), remove_between=True)
    assert CALLS == [4, 4]  # the hit was checked, found broken, and refreshed
    assert stages.cache_hits == []
    (written,) = tmp_path.glob("squares-*/squares.parquet")
    assert pd.read_parquet(written)["square"].tolist() == [0, 1, 4, 9]


@dataclass
class Outcome:
    served_from_cache: bool


def test_a_stage_that_is_not_one_task_counts_as_cached_when_its_result_says_so(tmp_path):
    stages = StageLog(str(tmp_path), timings={"split": 1.5}, cache_hits=["split"])
    assert stages.call("sweep", Outcome, served_from_cache=True) == Outcome(True)
    assert stages.call("train", Outcome, served_from_cache=False) == Outcome(False)
    assert list(stages.timings) == ["split", "sweep", "train"] and stages.cache_hits == ["split", "sweep"]


def test_a_stage_directory_is_keyed_on_the_code_and_every_input(tmp_path):
    directory = stage_directory(tmp_path, "data/split", __file__, "a", "b")
    assert directory.parent == tmp_path / "data" and re.fullmatch(r"split-[0-9a-f]{16}", directory.name)
    assert directory == stage_directory(tmp_path, "data/split", __file__, "a", "b")
    assert directory != stage_directory(tmp_path, "data/split", __file__, "b", "a")
    # Another module (other code) never shares the directory, even with the same inputs.
    assert directory != stage_directory(
        tmp_path, "data/split", str(Path(__file__).with_name("test_locking.py")), "a", "b"
    )
