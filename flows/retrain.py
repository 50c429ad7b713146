"""The cron entry: retrain only when the data or the config changed since the champion was trained.

    python -m flows.retrain --config deployments/demo.yaml [--set ...] [--force] [--summary-out FILE]

It fingerprints the configured sources; when the champion was trained on the same bytes with the same
config, and the champion still loads, it ends at once as "skipped: data unchanged" (the Prefect state message and
the summary say so).
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
from tunegate.runtime.tracking import champion_tags, tracking_uri, unloadable_version
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
    # A champion that no longer loads (its model files deleted) is retrained: the register stage's cached result is
    # then stale too, and registers the candidate again.
    unloadable = champion_unloadable(config, champion) if unchanged and not force else None
    if unchanged and not force and unloadable is None:
        name_this_flow_run(f"retrain: {SKIPPED}")
        summary = {"status": "skipped", "reason": SKIPPED, "champion_version": champion["version"]}
        return Completed(message=SKIPPED, data=summary)
    reason = retrain_reason(champion, source_fingerprint, pipeline_fingerprint(config), force)
    name_this_flow_run(f"retrain: {'champion does not load' if unloadable else reason}")
    warm_start = []
    if champion and champion.get("optuna_study"):
        storage = storage_url(config.sweep, config.home_path())
        warm_start = best_trials_of(champion["optuna_study"], storage, WARM_START_TRIALS)
    return finetune(config, warm_start=warm_start)


def champion_unloadable(config: PipelineConfig, champion: dict[str, str]) -> str | None:
    """Why the champion's registered version does not load (its model files gone), else None."""
    return unloadable_version(tracking_uri(config), config.registered_model_name(), champion["version"])


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
