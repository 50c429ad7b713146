"""Validate: run the GX data contract on the canonical table; quarantine failing rows with every reason.

Reads the ingest stage's canonical table and rejected records; writes
`<home>/data/validate-<key>/valid.parquet` (rows that pass every row check) and `quarantine.jsonl`
(ingest rejects + failing rows: original record, source file and line, every failed check).
Table-level problems (too few valid rows, too large a quarantined fraction) come back as
`success=False` with a one-line reason; the flow fails the run on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task

from data_checks.contract import TABLE_SUITE, columns_checked, row_suite_names, run_suites, suite_path
from tunegate.config.data import TaskConfig, ValidationConfig
from tunegate.core.fingerprint import fingerprint_file, fingerprint_value
from tunegate.core.refs import read_jsonl, write_jsonl, write_table
from tunegate.data.results import IngestResult, ValidationResult
from tunegate.lm.model_loading import load_tokenizer
from tunegate.runtime.caching import stage_cache_policy
from tunegate.runtime.stages import stage_directory

SUITE_FILES = [suite_path(name) for name in row_suite_names(True, True) + [TABLE_SUITE]]
# Tokenize in batches of 4096 texts: the fast tokenizer's batch call, bounded memory at 1M rows.
TOKENIZE_BATCH = 4096
# How many offending rows a failure message names before pointing at the quarantine file.
NAMED_OFFENDERS = 3


@task(cache_policy=stage_cache_policy(*SUITE_FILES))
def validate_rows(
    ingested: IngestResult, validation: ValidationConfig, task_config: TaskConfig, home: str
) -> ValidationResult:
    """Check every canonical row against the suites; split rows into valid and quarantined."""
    out_dir = stage_directory(
        home, "data/validate", __file__, ingested.canonical.fingerprint, fingerprint_value([validation, task_config])
    )
    frame = add_derived_columns(ingested.canonical.read(), validation)
    parameters = suite_parameters(validation, task_config)
    with_labels = bool(task_config.labels) and bool(frame["labelled"].any())
    row_suites = row_suite_names(with_labels, validation.tokenizer is not None)
    rows = run_suites(
        frame[columns_checked(row_suites)],
        row_suites,
        parameters,
        Path(home),
        checkpoint_name="canonical-rows",
        build_docs=False,
    )
    failing = frame["row_id"].isin(rows.failed_checks_by_row.keys())
    valid = frame.loc[~failing].reset_index(drop=True)
    table = run_suites(
        valid, [TABLE_SUITE], parameters, Path(home), checkpoint_name="valid-table", build_docs=validation.data_docs
    )
    quarantine = read_jsonl(Path(ingested.rejected_path)) + quarantine_records(
        frame.loc[failing], rows.failed_checks_by_row
    )
    source_order = list(ingested.per_source)
    quarantine.sort(key=lambda record: (source_order.index(record["source"]), record["source_line"]))
    quarantine_path = write_jsonl(quarantine, out_dir / "quarantine.jsonl")
    reason = table_failure_reason(table, len(valid), len(quarantine), ingested.rows_read, validation, quarantine)
    return ValidationResult(
        valid=write_table(valid, out_dir / "valid.parquet"),
        quarantine_path=str(quarantine_path),
        quarantine_fingerprint=fingerprint_file(quarantine_path),
        quarantined=len(quarantine),
        rejected_at_ingest=ingested.rejected,
        failed_row_checks=int(failing.sum()),
        failures_by_check={**ingest_failure_counts(ingested), **rows.failures_by_check, **table.failures_by_check},
        success=reason is None,
        failure_reason=reason,
        data_docs=table.data_docs,
    )


def add_derived_columns(frame: pd.DataFrame, validation: ValidationConfig) -> pd.DataFrame:
    """Columns the suites check: the chat role sequence, whether a preference pair's replies differ and, with a
    tokenizer, the token count."""
    frame = frame.copy()
    frame["chat_roles"] = [
        ",".join(message["role"] for message in messages) if messages is not None else None
        for messages in frame["messages"]
    ]
    chosen, rejected = (frame[name].fillna("").str.strip().str.lower() for name in ("completion", "rejected"))
    frame["replies_differ"] = (chosen != rejected).where(frame["shape"] == "preference")
    frame["total_tokens"] = count_tokens(frame, validation) if validation.tokenizer else pd.NA
    frame["total_tokens"] = frame["total_tokens"].astype("Int64")
    return frame


def count_tokens(frame: pd.DataFrame, validation: ValidationConfig) -> list[int]:
    tokenizer = load_tokenizer(validation.tokenizer, validation.trust_remote_code)
    texts = (frame["prompt"].fillna("") + "\n" + frame["completion"].fillna("")).tolist()
    counts: list[int] = []
    for start in range(0, len(texts), TOKENIZE_BATCH):
        encoded = tokenizer(texts[start : start + TOKENIZE_BATCH], add_special_tokens=False)["input_ids"]
        counts.extend(len(ids) for ids in encoded)
    return counts


def suite_parameters(validation: ValidationConfig, task_config: TaskConfig) -> dict[str, Any]:
    """Values for the suites' $PARAMETERs, all from config."""
    return {
        "min_prompt_chars": validation.min_prompt_chars,
        "max_prompt_chars": validation.max_prompt_chars,
        "min_completion_chars": validation.min_completion_chars,
        "max_completion_chars": validation.max_completion_chars,
        "max_tokens": validation.max_tokens,
        "min_rows": validation.min_rows,
        "labels": list(task_config.labels or []),
    }


def quarantine_records(failing: pd.DataFrame, checks_by_row: dict[str, list[str]]) -> list[dict[str, Any]]:
    return [
        {
            "row_id": row.row_id,
            "source": row.source,
            "source_line": int(row.source_line),
            "stage": "validate",
            "checks": checks_by_row[row.row_id],
            "raw": row.raw,
        }
        for row in failing.itertuples(index=False)
    ]


def table_failure_reason(
    table: Any,
    valid_rows: int,
    quarantined: int,
    rows_read: int,
    validation: ValidationConfig,
    quarantine: list[dict[str, Any]],
) -> str | None:
    """One line saying why the data as a whole fails the contract, or None."""
    fraction = quarantined / rows_read if rows_read else 0.0
    if fraction > validation.max_quarantine_fraction:
        named = "; ".join(
            f"{q['source']} line {q['source_line']}: {', '.join(q['checks'])}" for q in quarantine[:NAMED_OFFENDERS]
        )
        return (
            f"quarantined {quarantined} of {rows_read} rows ({fraction:.1%}), above "
            f"data.validation.max_quarantine_fraction={validation.max_quarantine_fraction:.1%}; first: {named}"
        )
    if table.failures_by_check.get("min_valid_rows"):
        return f"only {valid_rows} valid rows, data.validation.min_rows expects at least {validation.min_rows}"
    if not table.success:
        failed = [check for check, count in table.failures_by_check.items() if count]
        return f"table checks failed: {', '.join(failed)}"
    return None


def ingest_failure_counts(ingested: IngestResult) -> dict[str, int]:
    return {"ingest_readable_record": ingested.rejected}
