"""The cron entry's decisions: why a retraining run trains, and what a skipped one says. The flow itself (skipped on
unchanged data, forced, a champion whose files are gone) runs in tests/flows/test_finetune.py on the two tiny runs
that test file already makes: a second pair here would cost ~2 minutes of `make test`."""

from __future__ import annotations

import pytest

from flows.retrain import SKIPPED, render_retrain_report, retrain_reason, retrain_summary

CHAMPION = {"version": "3", "source_fingerprint": "sources-a", "config_fingerprint": "config-a"}


@pytest.mark.parametrize(
    ("champion", "sources", "force", "reason"),
    [
        (CHAMPION, "sources-a", True, "forced"),  # forced wins, even over unchanged data
        (None, "sources-a", True, "forced"),
        (None, "sources-a", False, "no champion yet"),
        (CHAMPION, "sources-b", False, "data changed"),  # the data first, when the config changed too
        (CHAMPION, "sources-a", False, "config changed"),
        ({"version": "1"}, "sources-a", False, "data changed"),  # a champion registered before fingerprints
    ],
)
def test_the_reason_is_the_first_of_forced_no_champion_data_changed_config_changed(champion, sources, force, reason):
    assert retrain_reason(champion, sources, "config-b", force) == reason


def test_a_skipped_run_says_which_champion_already_reflects_the_data():
    summary = {"status": "skipped", "reason": SKIPPED, "champion_version": "3"}
    assert retrain_summary(summary) is summary
    assert render_retrain_report(summary) == (
        "skipped: data unchanged (champion v3 was trained on these data and config)"
    )
