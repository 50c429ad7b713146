"""The whole DAG: data stages → Optuna sweep at the shipped budget → the best trial as candidate → evaluation vs
base → MLflow registration gated on the bootstrap interval.

python -m flows.finetune --config deployments/demo.yaml [--set sweep.n_trials=12 ...] [--summary-out FILE]
"""

from __future__ import annotations

import sys
import time
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from flows.prepare_data import prepare_data
from tasks.evaluate import evaluate_final_model
from tasks.register import lineage_tags, register_model
from tasks.sweep import log_study_plots, run_sweep, storage_url, study_name
from tasks.train import train_candidate
from tunegate.budget import final_plan, trial_plan
from tunegate.cli import run_cli
from tunegate.config import PipelineConfig, pipeline_fingerprint
from tunegate.report import data_summary, finetune_summary, publish_finetune_artifact, render_finetune_report
from tunegate.runners import flow_with_task_runner
from tunegate.stages import StageLog
from tunegate.tracking import close_pipeline_run, fail_pipeline_run, link_chosen_trial, open_pipeline_run


def mark_mlflow_run_failed(flow: Any, run: Any, state: Any) -> None:
    """A failed or crashed run's parent MLflow run (and its open nested runs) end FAILED, not RUNNING."""
    fail_pipeline_run(PipelineConfig.model_validate(run.parameters["config"]), str(run.id))


@flow(name="finetune", on_failure=[mark_mlflow_run_failed], on_crashed=[mark_mlflow_run_failed])
def finetune(config: PipelineConfig, warm_start: list[dict[str, float | int]] | None = None) -> dict[str, Any]:
    """Raw data in, an evaluated model version registered (champion only if it is better); returns the summary.

    `warm_start`: sweep params to try first (retraining passes the previous study's best trials)."""
    data = prepare_data(config)
    splits = data.split
    home = str(config.home_path())
    stages = StageLog(home, timings=dict(data.timings), cache_hits=list(data.cache_hits))
    tracking = open_pipeline_run(config, str(flow_run.id), str(flow_run.name), data.data_fingerprint)
    plan = trial_plan(config, splits.train.rows)
    study = study_name(config.name, data.data_fingerprint, config.model, config.train, config.sweep, plan)
    storage = storage_url(config.sweep, config.home_path())
    started = time.perf_counter()
    sweep = run_sweep(
        study,
        storage,
        config.sweep,
        splits.train,
        splits.val,
        config.model,
        config.train,
        plan,
        home,
        tracking,
        warm_start,
    )
    stages.record("sweep", time.perf_counter() - started, cached=sweep.trials_run == 0)
    log_study_plots(study, storage, config.sweep, plan, tracking, config.home_path() / "sweeps" / study)
    trained = stages.run(
        "train",
        train_candidate,
        sweep.chosen,
        splits.train,
        splits.val,
        config.model,
        config.train,
        config.sweep,
        final_plan(config, splits.train.rows, splits.val.rows),
        home,
        tracking,
    )
    link_chosen_trial(tracking, sweep.chosen.number, sweep.chosen.mlflow_run_id, trained.source)
    evaluated = stages.run(
        "evaluate",
        evaluate_final_model,
        trained.result.adapter_dir,
        trained.adapter_fingerprint,
        splits.test,
        config.model,
        config.task,
        config.eval,
        home,
    )
    lineage = lineage_tags(
        data.data_fingerprint,
        data.validated.success,
        study,
        sweep.best_params,
        str(flow_run.id),
        data.source_fingerprint,
        pipeline_fingerprint(config),
    )
    registered = stages.run(
        "register",
        register_model,
        trained.result.adapter_dir,
        trained.adapter_fingerprint,
        evaluated.result,
        evaluated.rows,
        evaluated.scores,
        trained.result.health,
        config.model,
        config.registry,
        config.registry.model_name or config.name,
        lineage,
        tracking,
    )
    summary = finetune_summary(data_summary(data), sweep, trained, evaluated.result, registered, tracking, stages)
    close_pipeline_run(tracking, summary["mlflow"]["params"], summary["mlflow"]["metrics"])
    publish_finetune_artifact(summary)
    return summary


if __name__ == "__main__":
    sys.exit(run_cli(flow_with_task_runner(finetune), render_finetune_report, __doc__))
