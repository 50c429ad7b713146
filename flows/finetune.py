"""The whole DAG: data stages → the base (a registered version merged into whole weights) → Optuna sweep at the
shipped budget → the best trial as candidate → evaluation vs base, and drift from it on general instructions →
a classical baseline (TF-IDF + logistic regression) on the same rows → merged/int8 exports scored and timed →
MLflow registration gated on the bootstrap intervals (gain, drift, and the baseline when asked), then the exports
that kept the adapter's metric.

python -m flows.finetune --config deployments/demo.yaml [--set sweep.n_trials=12 ...] [--summary-out FILE]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from flows.prepare_data import prepare_data
from tasks.base_model import resolve_base_model
from tasks.baseline import score_baseline
from tasks.evaluate import answer_retention_prompts, evaluate_final_model
from tasks.export import export_builds
from tasks.register import register_exports, register_model
from tasks.sweep import run_sweep, study_for
from tasks.train import train_candidate
from tunegate.cli import run_cli
from tunegate.config.pipeline import PipelineConfig
from tunegate.registry.versions import lineage_tags
from tunegate.reporting.finetuned import BaseDescription, FinetuneResult
from tunegate.reporting.markdown import publish_finetune_artifact
from tunegate.reporting.report import finetune_summary, render_finetune_report
from tunegate.runtime.runners import flow_with_task_runner
from tunegate.runtime.stages import StageLog
from tunegate.runtime.tracking import fail_pipeline_run, open_pipeline_run
from tunegate.sweep.plots import log_study_plots
from tunegate.training.job import TrainingJob


def mark_mlflow_run_failed(flow: Any, run: Any, state: Any) -> None:
    """A failed or crashed run's parent MLflow run (and its open nested runs) end FAILED, not RUNNING."""
    fail_pipeline_run(PipelineConfig.model_validate(run.parameters["config"]), str(run.id))


@flow(name="finetune", on_failure=[mark_mlflow_run_failed], on_crashed=[mark_mlflow_run_failed])
def finetune(config: PipelineConfig, warm_start: list[dict[str, float | int]] | None = None) -> FinetuneResult:
    """Raw data in, an evaluated model version registered (champion only if it is better); `warm_start`: sweep
    params to try first (retraining passes the previous study's best trials)."""
    data = prepare_data(config)
    stages = StageLog(str(config.home_path()), timings=dict(data.timings), cache_hits=list(data.cache_hits))
    tracking = open_pipeline_run(config, str(flow_run.id), str(flow_run.name), data.data_fingerprint)
    configured_base = config.model.base
    config = config.with_model(resolve_base_model(model=config.model, tracking_uri=tracking.uri, home=stages.home))
    trials = TrainingJob.for_trials(config, data.split)
    study = study_for(config, data.data_fingerprint, trials.plan)
    sweep = stages.call("sweep", run_sweep, study=study, job=trials, tracking=tracking, warm_start=warm_start)
    log_study_plots(study, trials.plan, tracking, Path(trials.home) / "sweeps" / study.name)
    job = TrainingJob.for_candidate(config, data.split)
    trained = stages.run("train", train_candidate, chosen=sweep.chosen, job=job, sweep=config.sweep, tracking=tracking)
    retention = stages.run("retention", answer_retention_prompts, settings=config.retention_settings())
    evaluated = stages.run(
        "evaluate",
        evaluate_final_model,
        adapter=trained.adapter,
        test=data.split.test,
        settings=config.evaluation(),
        retention=retention,
    )
    baseline = stages.run(
        "baseline", score_baseline, train=data.split.train, evaluated=evaluated, settings=config.baseline_settings()
    )
    builds = stages.run(
        "export", export_builds, adapter=trained.adapter, evaluated=evaluated, settings=config.export_settings()
    )
    judged = evaluated.with_baseline(baseline)  # what the gate and the reports read: base, baseline and tuned
    registered = stages.run(
        "register",
        register_model,
        candidate=trained,
        evaluated=judged,
        model=config.model,
        registry=config.registry_settings(),
        lineage=lineage_tags(data, sweep, config, flow_run_id=str(flow_run.id)),
        tracking=tracking,
    )
    exports = stages.run("register_exports", register_exports, builds=builds, registered=registered, tracking=tracking)
    result = FinetuneResult(
        base=BaseDescription.of(configured_base, config.model.base),
        data=data,
        sweep=sweep,
        trained=trained,
        evaluated=judged,
        registered=registered,
        exports=exports,
        tracking=tracking,
        stages=stages,
    )
    result.close_mlflow_run()
    publish_finetune_artifact(result)
    return result


def main(argv: list[str] | None = None) -> int:
    """`python -m flows.finetune` and `tunegate finetune`."""
    return run_cli(flow_with_task_runner(finetune), render_finetune_report, __doc__, argv, summarize=finetune_summary)


if __name__ == "__main__":
    sys.exit(main())
