"""Data stages alone: ingest → validate → deduplicate → split, each a cached, retriable Prefect task.

python -m flows.prepare_data --config deployments/demo.yaml [--set data.dedup.threshold=0.9] [--summary-out FILE]
"""

from __future__ import annotations

import sys

from prefect import flow

from tasks.deduplicate import deduplicate_rows
from tasks.ingest import fingerprint_sources, ingest_sources
from tasks.split import split_rows
from tasks.validate import validate_rows
from tunegate.cli import run_cli
from tunegate.config.pipeline import PipelineConfig
from tunegate.core.errors import DataContractError
from tunegate.data.accounting import balanced_row_counts, check_no_leakage
from tunegate.data.prepared import PreparedData
from tunegate.reporting.data_report import data_summary, publish_data_artifact, render_data_report
from tunegate.runtime.stages import StageLog


@flow(name="prepare-data")
def prepare_data(config: PipelineConfig) -> PreparedData:
    """Raw files in; validated, deduplicated, leakage-free train/val/test Parquet out."""
    home = str(config.home_path())
    stages = StageLog(home)
    pinned = stages.run("fingerprint", fingerprint_sources, config.data.sources)
    ingested = stages.run("ingest", ingest_sources, config.data.sources, pinned, home)
    validated = stages.run("validate", validate_rows, ingested, config.data.validation, config.task, home)
    if not validated.success:
        raise DataContractError(validated.failure_reason)
    deduped = stages.run("dedup", deduplicate_rows, validated.valid, config.data.dedup, home)
    split = stages.run("split", split_rows, deduped.kept, config.data.split, config.data.dedup, home)
    check_no_leakage(split)
    prepared = PreparedData(
        pinned=pinned,
        ingested=ingested,
        validated=validated,
        deduped=deduped,
        split=split,
        counts=balanced_row_counts(ingested, validated, deduped, split),
        timings=stages.timings,
        cache_hits=stages.cache_hits,
    )
    publish_data_artifact(data_summary(prepared))
    return prepared


def main(argv: list[str] | None = None) -> int:
    """`python -m flows.prepare_data` and `tunegate prepare-data`."""
    return run_cli(prepare_data, render_data_report, __doc__, argv, summarize=data_summary)


if __name__ == "__main__":
    sys.exit(main())
