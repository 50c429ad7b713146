"""The data flow's report: the terminal table and the artifact rows say the same accounting, only the checks that
failed, and which stages came from the cache."""

from __future__ import annotations

from tunegate.reporting.data_report import data_report_rows, failed_summary, render_data_report

SUMMARY = {
    "status": "ok",
    "data": {
        "rows_read": 3766,
        "quarantined": 41,
        "exact_duplicates": 80,
        "near_duplicates": 45,
        "train": 2880,
        "val": 360,
        "test": 360,
        "test_train_near_duplicates": 0,
        "files": {"quarantine": "home/q.jsonl", "duplicates": "home/d.parquet"},
    },
    "validation": {"data_docs": "home/gx/index.html", "failures_by_check": {"prompt_not_blank": 6, "other": 0}},
    "timings": {"ingest": 0.31, "validate": 4.72},
    "cache_hits": ["ingest"],
}


def test_the_terminal_report_lists_the_accounting_the_failed_checks_and_cached_stages():
    assert render_data_report(SUMMARY).splitlines() == [
        "Data report",
        "-----------",
        "  rows_read                         3766",
        "  quarantined                         41",
        "  exact_duplicates                    80",
        "  near_duplicates                     45",
        "  train                             2880",
        "  val                                360",
        "  test                               360",
        "  test/val rows near train             0",
        "  failed checks:",
        "    prompt_not_blank                   6",
        "  stages: ingest 0.3s (cached), validate 4.7s",
        "  quarantine: home/q.jsonl",
        "  duplicates: home/d.parquet",
        "  data docs:  home/gx/index.html",
    ]


def test_a_clean_run_without_data_docs_has_no_empty_sections():
    clean = {**SUMMARY, "validation": {"data_docs": None, "failures_by_check": {"prompt_not_blank": 0}}}
    lines = render_data_report(clean).splitlines()
    assert "  failed checks:" not in lines and not any(line.startswith("  data docs:") for line in lines)


def test_the_artifact_rows_carry_the_same_numbers():
    rows = data_report_rows(SUMMARY)
    assert rows[0] == {"section": "rows", "item": "rows_read", "value": 3766}
    assert {"section": "failed check", "item": "prompt_not_blank", "value": 6} in rows
    assert not [row for row in rows if row["item"] == "other"]
    assert rows[-2:] == [
        {"section": "seconds", "item": "ingest (cached)", "value": 0.31},
        {"section": "seconds", "item": "validate", "value": 4.72},
    ]
    assert len(rows) == 8 + 1 + 2


def test_a_failed_run_reports_its_error_and_no_stages():
    assert failed_summary("data.split leaves no test rows") == {
        "status": "failed",
        "error": "data.split leaves no test rows",
        "timings": {},
        "cache_hits": [],
    }
