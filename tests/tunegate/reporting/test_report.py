"""The summary JSON and the run report are rendered from the typed results alone: exact keys and values from a
hand-built FinetuneResult, with every key of the summary contract (../shared/checks/summary_contract.py)."""

from __future__ import annotations

import math

from tests.fixtures.finetune_result import finetune_result
from tests.fixtures.runs import FULL_KEYS, lookup
from tunegate.evaluation.results import BaselineResult
from tunegate.reporting.report import finetune_summary, number, render_finetune_report

DATA_KEYS = ["status", "data.rows_read", "data.quarantined", "data.exact_duplicates", "data.near_duplicates"]
DATA_KEYS += ["data.train", "data.val", "data.test", "data.test_train_near_duplicates", "validation.success"]
DATA_KEYS += ["validation.data_docs", "timings", "cache_hits"]


def missing_contract_keys(summary: dict) -> list[str]:
    missing = []
    for dotted in DATA_KEYS + FULL_KEYS:
        try:
            lookup(summary, dotted)
        except KeyError:
            missing.append(dotted)
    return missing


def test_the_summary_is_rendered_from_the_typed_results(tmp_path):
    result = finetune_result(tmp_path)
    summary = finetune_summary(result)
    assert summary["sweep"]["storage"] == "postgresql://tune:***@db/optuna"  # redacted wherever it is shown
    assert summary["sweep"]["chosen_trial"] == 2 and summary["sweep"]["trials_run"] == 2
    assert summary["train"]["adapter_dir"] == str(tmp_path / "adapter")
    assert summary["train"]["adapter_fingerprint"] == result.trained.adapter.fingerprint
    assert summary["eval"]["delta_ci95"] == [0.25, 1.0]
    # What the parent MLflow run logs, as it logs it (their values: tests/tunegate/reporting/test_finetuned.py).
    assert (summary["mlflow"]["params"], summary["mlflow"]["metrics"]) == (
        result.mlflow_params(),
        result.mlflow_metrics(),
    )
    assert len(summary["mlflow"]["params"]) == 7 and len(summary["mlflow"]["metrics"]) == 11
    assert summary["eval"]["baseline"] == {
        "model": "tfidf-logreg",
        "train_rows": 30,
        "rows": 8,
        "vocabulary_size": 120,
        "accuracy": 0.75,
        "macro_f1": 0.7,
        "delta": 0.125,
        "delta_ci95": [-0.125, 0.375],
        "predictions": "/nowhere/t.parquet",
    }
    assert result.mlflow_tags() == {
        "chosen_trial": "2",
        "candidate_source": "trial 0",
        "chosen_trial_run_id": "trial-run",
    }
    assert (summary["timings"], summary["cache_hits"]) == ({"ingest": 1.0, "sweep": 9.0}, ["ingest"])
    assert missing_contract_keys(summary) == []


def test_nan_metrics_stay_out_of_mlflow_and_read_n_a_in_the_report(tmp_path):
    result = finetune_result(tmp_path, tuned_accuracy=math.nan, baseline=BaselineResult(skipped="turned off"))
    assert sorted(result.mlflow_metrics()) == ["base_accuracy", "tokens_per_second", "trainable_parameters", "val_loss"]
    assert number(math.nan) == number(None) == "n/a" and number(0.5) == "0.500"
    report = render_finetune_report(finetune_summary(result))
    assert "  fine-tuned           n/a     0.500" in report
    assert "  registry: support-demo v1 → champion: promoted: no champion yet" in report


def test_the_report_shows_each_build_beside_the_adapter_and_why_it_was_not_registered(tmp_path):
    summary = finetune_summary(finetune_result(tmp_path))
    assert summary["exports"]["merged"]["registered"] and not summary["exports"]["int8"]["registered"]
    report = render_finetune_report(summary).splitlines()
    start = report.index("  build       accuracy    drop   p50 ms   p95 ms     MiB  registered")
    assert report[start + 1 : start + 4] == [
        "  adapter        0.875  +0.000     40.0     52.5     9.4  the adapter (above)",
        "  merged         0.875  +0.000     25.0     30.0     9.0  v2 (champion-merged)",
        "  int8           0.750  +0.125     20.0     24.0     5.3  accuracy 0.750 vs adapter 0.875 (drop +0.125, "
        "beyond export.max_metric_drop 0.010)",
    ]


def test_the_report_ranks_base_baseline_and_tuned_on_the_same_rows(tmp_path):
    report = render_finetune_report(finetune_summary(finetune_result(tmp_path))).splitlines()
    start = report.index("                  accuracy      loss")
    assert report[start + 1 : start + 4] == [
        "  base               0.250     2.000",
        "  baseline           0.750       n/a",
        "  fine-tuned         0.875     0.500",
    ]
    assert (
        "  fine-tuned - baseline (tfidf-logreg, fitted on 30 train rows) +0.125 (95% CI -0.125 .. +0.375) on the same "
        "8 rows; best: fine-tuned 0.875, baseline 0.750, base 0.250" in report
    )


def test_a_task_without_a_baseline_says_why_in_the_report_and_logs_none_of_it(tmp_path):
    skipped = BaselineResult(skipped="a free-text task has no labels to classify (task.labels is unset)")
    result = finetune_result(tmp_path, baseline=skipped)
    summary = finetune_summary(result)
    assert summary["eval"]["baseline"] == {"model": "tfidf-logreg", "skipped": skipped.skipped}
    assert not [name for name in result.mlflow_metrics() if "baseline" in name]
    report = render_finetune_report(summary)
    assert (
        "  classical baseline (tfidf-logreg): none, a free-text task has no labels to classify (task.labels is unset)"
        in report.splitlines()
    )
    assert "  baseline   " not in report
