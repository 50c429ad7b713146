"""What the data flow reports: its summary (row accounting, validation, quarantine), the terminal table and the
Prefect artifact; and the summary of a run that failed."""

from __future__ import annotations

from typing import Any

from prefect.artifacts import create_table_artifact

from tunegate.data.prepared import PreparedData


def data_summary(prepared: PreparedData) -> dict[str, Any]:
    """The data part of the summary contract (keys listed in the data-stages issue)."""
    counts, ingested, validated = prepared.counts, prepared.ingested, prepared.validated
    deduped, split = prepared.deduped, prepared.split
    return {
        "status": "ok",
        "data": {
            **counts.model_dump(),
            "test_train_near_duplicates": split.test_train_near_duplicates,
            "per_source": ingested.per_source,
            "files": {
                "canonical": ingested.canonical.path,
                "quarantine": validated.quarantine_path,
                "duplicates": deduped.duplicates.path,
                "train": split.train.path,
                "val": split.val.path,
                "test": split.test.path,
            },
            "fingerprints": {name: getattr(split, name).fingerprint for name in ("train", "val", "test")},
            "source_fingerprint": prepared.source_fingerprint,
        },
        "validation": {
            "success": validated.success,
            "data_docs": validated.data_docs,
            "failures_by_check": validated.failures_by_check,
        },
        "timings": dict(prepared.timings),
        "cache_hits": list(prepared.cache_hits),
    }


def failed_summary(error: str) -> dict[str, Any]:
    return {"status": "failed", "error": error, "timings": {}, "cache_hits": []}


def data_report_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per line of the accounting, then per failing check, then per stage timing."""
    data, validation = summary["data"], summary["validation"]
    rows = [{"section": "rows", "item": key, "value": data[key]} for key in ACCOUNTING_KEYS]
    rows.append({"section": "rows", "item": "test_train_near_duplicates", "value": data["test_train_near_duplicates"]})
    rows += [
        {"section": "failed check", "item": check, "value": count}
        for check, count in validation["failures_by_check"].items()
        if count
    ]
    rows += [
        {"section": "seconds", "item": stage + (" (cached)" if stage in summary["cache_hits"] else ""), "value": s}
        for stage, s in summary["timings"].items()
    ]
    return rows


ACCOUNTING_KEYS = ["rows_read", "quarantined", "exact_duplicates", "near_duplicates", "train", "val", "test"]


def publish_data_artifact(summary: dict[str, Any]) -> None:
    """A table artifact on the flow run: counts per stage, failures per check, stage timings."""
    create_table_artifact(
        data_report_rows(summary), key="data-report", description="Row accounting, failed checks and stage timings."
    )


def render_data_report(summary: dict[str, Any]) -> str:
    """Plain-text report for the terminal."""
    data, validation = summary["data"], summary["validation"]
    lines = ["Data report", "-----------"]
    lines += [f"  {key:<28}{data[key]:>10}" for key in ACCOUNTING_KEYS]
    lines.append(f"  {'test/val rows near train':<28}{data['test_train_near_duplicates']:>10}")
    failing = {check: count for check, count in validation["failures_by_check"].items() if count}
    if failing:
        lines.append("  failed checks:")
        lines += [f"    {check:<26}{count:>10}" for check, count in failing.items()]
    stage_times = ", ".join(
        f"{stage} {seconds:.1f}s" + (" (cached)" if stage in summary["cache_hits"] else "")
        for stage, seconds in summary["timings"].items()
    )
    lines.append(f"  stages: {stage_times}")
    lines.append(f"  quarantine: {data['files']['quarantine']}")
    lines.append(f"  duplicates: {data['files']['duplicates']}")
    if validation["data_docs"]:
        lines.append(f"  data docs:  {validation['data_docs']}")
    return "\n".join(lines)
