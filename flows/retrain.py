"""The cron entry: retrain only when the data or the config changed since the champion was trained.

    python -m flows.retrain --config deployments/demo.yaml [--set ...] [--force] [--summary-out FILE]

It fingerprints the configured sources; when the champion was trained on the same bytes with the same
config it ends at once as "skipped: data unchanged" (the Prefect state message and the summary say so).
Otherwise it runs the whole finetune DAG, warm-starting the sweep with the previous study's best trials.
`force=True` always retrains.
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow
from prefect.states import Completed

from flows.finetune import finetune
from tasks.ingest import fingerprint_sources
from tunegate.cli import run_cli
from tunegate.config.pipeline import PipelineConfig, pipeline_fingerprint
from tunegate.core.fingerprint import combine
from tunegate.reporting.finetuned import FinetuneResult
from tunegate.reporting.report import finetune_summary, render_finetune_report
from tunegate.runtime.runners import flow_with_task_runner, name_this_flow_run
from tunegate.runtime.tracking import champion_tags
from tunegate.sweep.study import storage_url
from tunegate.sweep.trials import best_trials_of

SKIPPED = "skipped: data unchanged"
WARM_START_TRIALS = 3


@flow(name="retrain")
def retrain(config: PipelineConfig, force: bool = False) -> Any:
    """Skip when the champion already reflects these data and this config; else finetune, warm-started."""
    pinned = fingerprint_sources(config.data.sources)
    source_fingerprint = combine(*(source.fingerprint for source in pinned))
    champion = champion_tags(config)
    unchanged = champion is not None and (
        champion.get("source_fingerprint") == source_fingerprint
        and champion.get("config_fingerprint") == pipeline_fingerprint(config)
    )
    if unchanged and not force:
        name_this_flow_run(f"retrain: {SKIPPED}")
        summary = {"status": "skipped", "reason": SKIPPED, "champion_version": champion["version"]}
        return Completed(message=SKIPPED, data=summary)
    name_this_flow_run(f"retrain: {retrain_reason(champion, source_fingerprint, pipeline_fingerprint(config), force)}")
    warm_start = []
    if champion and champion.get("optuna_study"):
        storage = storage_url(config.sweep, config.home_path())
        warm_start = best_trials_of(champion["optuna_study"], storage, WARM_START_TRIALS)
    return finetune(config, warm_start=warm_start)


def retrain_reason(champion: dict[str, str] | None, sources: str, config: str, force: bool) -> str:
    """Why a retraining run trains: the first of forced, no champion yet, data changed, config changed."""
    if force:
        return "forced"
    if champion is None:
        return "no champion yet"
    return "data changed" if champion.get("source_fingerprint") != sources else "config changed"


def retrain_summary(result: FinetuneResult | dict[str, Any]) -> dict[str, Any]:
    """A skipped run's summary as it is; a retrained one's, the finetune summary."""
    return finetune_summary(result) if isinstance(result, FinetuneResult) else result


def render_retrain_report(summary: dict[str, Any]) -> str:
    if summary.get("status") == "skipped":
        return f"{summary['reason']} (champion v{summary['champion_version']} was trained on these data and config)"
    return render_finetune_report(summary)


def main(argv: list[str] | None = None) -> int:
    """`python -m flows.retrain` and `tunegate retrain`."""
    flags = {"force": "always retrain"}
    return run_cli(
        flow_with_task_runner(retrain), render_retrain_report, __doc__, argv, flags=flags, summarize=retrain_summary
    )


if __name__ == "__main__":
    sys.exit(main())
