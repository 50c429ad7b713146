"""Run the Great Expectations suites in `data_checks/suites/` against the canonical table.

The suites are reviewable JSON files; thresholds in them are `$PARAMETER`s filled from the
pipeline config at run time. Row-level suites report every failing row by `row_id` (result format
COMPLETE), so each quarantined row carries the name (`meta.check`) of every check it failed.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from data_checks.data_docs import make_site_offline
from tunegate.core.fingerprint import fingerprint_value
from tunegate.runtime.locking import host_lock

SUITES_DIR = Path(__file__).parent / "suites"
ROW_SUITES = ("canonical_rows",)
LABEL_SUITE = "task_labels"
TOKEN_SUITE = "token_lengths"
TABLE_SUITE = "valid_table"


@dataclass
class SuiteOutcome:
    """What one checkpoint run found."""

    success: bool
    failed_checks_by_row: dict[str, list[str]] = field(default_factory=dict)
    failures_by_check: dict[str, int] = field(default_factory=dict)
    observed_by_check: dict[str, Any] = field(default_factory=dict)
    data_docs: str | None = None


def suite_path(name: str) -> Path:
    return SUITES_DIR / f"{name}.json"


def row_suite_names(with_labels: bool, with_tokens: bool) -> list[str]:
    """The row-level suites that apply: labels only for a label task, tokens only with a tokenizer."""
    return [*ROW_SUITES, *([LABEL_SUITE] if with_labels else []), *([TOKEN_SUITE] if with_tokens else [])]


def columns_checked(suite_names: list[str]) -> list[str]:
    """Every column the named row-level suites read: checked columns, row-condition columns and row_id.

    GX copies the frame it is given for each row condition; `raw` (every record's original text) would
    about double those copies. Validate at 1M rows in the data_scale benchmark: 23.8 s before, 22.6 s after.
    """
    columns = {"row_id"}
    for name in suite_names:
        for expectation in json.loads(suite_path(name).read_text())["expectations"]:
            kwargs = expectation["kwargs"]
            columns.update([kwargs["column"]] if "column" in kwargs else [])
            columns.update(re.findall(r"\b([A-Za-z_]\w*)\s*(?:[!=<>]=|[<>])", kwargs.get("row_condition", "")))
    return sorted(columns)


def run_suites(
    frame: pd.DataFrame,
    suite_names: list[str],
    parameters: dict[str, Any],
    gx_root: Path,
    checkpoint_name: str,
    build_docs: bool,
) -> SuiteOutcome:
    """Validate `frame` against the named suites in one GX checkpoint; optionally update Data Docs."""
    # Concurrent runs with the same home share one GX file context (and its YAML): one writer at a time.
    with host_lock(f"gx-{fingerprint_value(str(gx_root.resolve()))[:16]}", gx_root):
        import great_expectations as gx  # 3 s import: only when validating

        context = file_context(gx_root)
        batch = whole_frame_batch(context, checkpoint_name)
        definitions = []
        for name in suite_names:
            suite = context.suites.add_or_update(gx.ExpectationSuite(**json.loads(suite_path(name).read_text())))
            definitions.append(
                context.validation_definitions.add_or_update(
                    gx.ValidationDefinition(name=f"{checkpoint_name}-{name}", data=batch, suite=suite)
                )
            )
        actions = [gx.checkpoint.UpdateDataDocsAction(name="data_docs")] if build_docs else []
        checkpoint = context.checkpoints.add_or_update(
            gx.Checkpoint(
                name=checkpoint_name,
                validation_definitions=definitions,
                actions=actions,
                result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["row_id"]},
            )
        )
        result = checkpoint.run(batch_parameters={"dataframe": frame}, expectation_parameters=parameters)
        outcome = collect_outcome(result)
        if build_docs:
            site = gx_root / "gx" / "uncommitted" / "data_docs" / "local_site"
            make_site_offline(site)
            outcome.data_docs = str(site / "index.html")
        return outcome


def file_context(gx_root: Path) -> Any:
    """A file-backed GX context under the pipeline home (Data Docs need one), quiet and offline."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    gx_root.mkdir(parents=True, exist_ok=True)
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="file", project_root_dir=str(gx_root))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def whole_frame_batch(context: Any, asset_name: str) -> Any:
    source = context.data_sources.add_or_update_pandas(name="tunegate")
    asset = next((a for a in source.assets if a.name == asset_name), None) or source.add_dataframe_asset(asset_name)
    existing = next((b for b in asset.batch_definitions if b.name == "whole"), None)
    return existing or asset.add_batch_definition_whole_dataframe("whole")


def collect_outcome(result: Any) -> SuiteOutcome:
    """Fold GX results into failing row ids per check and failure counts per check."""
    outcome = SuiteOutcome(success=bool(result.success))
    for validation in result.run_results.values():
        for expectation in validation.results:
            check = expectation.expectation_config.meta.get("check", expectation.expectation_config.type)
            details = expectation.result or {}
            if expectation.exception_info and expectation.exception_info.get("raised_exception"):
                message = expectation.exception_info.get("exception_message")
                raise RuntimeError(f"data check {check} could not run: {message}")
            outcome.observed_by_check[check] = details.get("observed_value")
            failing_ids = [entry["row_id"] for entry in details.get("unexpected_index_list") or []]
            unexpected = int(details.get("unexpected_count") or 0)
            outcome.failures_by_check[check] = unexpected if unexpected else int(not expectation.success)
            for row_id in failing_ids:
                outcome.failed_checks_by_row.setdefault(row_id, []).append(check)
    return outcome
