"""What the sweep returns: whether this run trained any trial, or found every one it needed already done."""

from __future__ import annotations

from tests.fixtures.finetune_result import finetune_result


def test_a_sweep_is_served_from_cache_only_when_it_ran_no_trial(tmp_path):
    sweep = finetune_result(tmp_path).sweep
    runs = [sweep.model_copy(update={"trials_run": trials_run}) for trials_run in (0, 1, 4)]
    assert [run.served_from_cache for run in runs] == [True, False, False]
