"""A stage's cache key: its inputs (bookkeeping arguments excluded), the files it names and its module's code;
and a stage bound to a home keeps its records and its locks there."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from prefect import task
from prefect.transactions import IsolationLevel

import tunegate.runtime.caching as caching
from tunegate.runtime.caching import bound_to_home, module_file, stage_cache_policy
from tunegate.runtime.code_version import code_fingerprint


def count_rows(rows: int, trial: int) -> int:
    return rows


def key(policy, **inputs) -> str:
    """The key a task of this module gets for `inputs` (the context carries only what the policy reads)."""
    return policy.compute_key(SimpleNamespace(task=SimpleNamespace(fn=count_rows)), inputs, {})


def test_the_key_follows_the_inputs_but_not_the_excluded_ones(tmp_path):
    policy = stage_cache_policy(excluded=("trial",))
    assert key(policy, rows=3, trial=0) == key(policy, rows=3, trial=7)
    assert key(policy, rows=3, trial=0) != key(policy, rows=4, trial=0)
    assert key(stage_cache_policy(), rows=3, trial=0) != key(stage_cache_policy(), rows=3, trial=7)


def test_the_key_follows_the_content_of_the_files_the_stage_names(tmp_path):
    suite = tmp_path / "suite.json"
    suite.write_text('{"expectations": []}')
    policy = stage_cache_policy(suite)
    before = key(policy, rows=3)
    suite.write_text('{"expectations": []}')  # rewritten, same content
    assert key(policy, rows=3) == before
    suite.write_text('{"expectations": [{"type": "expect_column_to_exist"}]}')
    assert key(policy, rows=3) != before
    assert key(stage_cache_policy(), rows=3) != before


def test_the_key_names_the_code_version_of_the_stages_module():
    assert module_file(count_rows) == __file__
    fingerprint = code_fingerprint(__file__)
    assert caching.combine(f"code={fingerprint}", f"rows={caching.fingerprint_value(3)}") == key(
        stage_cache_policy(), rows=3
    )


def test_a_stage_bound_to_a_home_keeps_its_records_and_locks_there(tmp_path):
    stage = bound_to_home(task(count_rows, cache_policy=stage_cache_policy(excluded=("trial",))), tmp_path)
    assert Path(str(stage.result_storage)) == tmp_path / "cache" / "results"
    assert stage.cache_policy.isolation_level == IsolationLevel.SERIALIZABLE
    assert stage.cache_policy.lock_manager.directory == tmp_path / "cache" / "locks"
    assert stage.cache_policy.excluded == ("trial",)  # the stage's own policy, bound
