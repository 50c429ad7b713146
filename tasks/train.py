"""Train: the candidate the flow evaluates and registers. With `sweep.final: best_trial` (default), the sweep's best
trial's best checkpoint as it is (retrained into its own directory only if its files are gone or changed); with
`refit`, a fresh full-budget run with the chosen params. The training itself is `tunegate.training.job.run_training`.
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from tunegate.config.search_space import ordered_params, searched_params, short_params
from tunegate.config.sweep import SweepConfig
from tunegate.core.fingerprint import fingerprint_value
from tunegate.core.refs import AdapterRef
from tunegate.runtime.caching import stage_cache_policy
from tunegate.runtime.tracking import TrackingRef, log_metrics
from tunegate.training.distributed import train_in_processes
from tunegate.training.job import TrainingJob, run_summary_metrics
from tunegate.training.results import ChosenTrial, TrainedModel

LOGGED_RECIPE = ("method", "epochs", "batch_size", "gradient_accumulation_steps")


def train_run_name() -> str:
    """`train r=16 lr=2.1e-03`: the params the candidate is trained (or taken) with."""
    from prefect.runtime import task_run

    return f"train {short_params(ordered_params(task_run.parameters['chosen'].params))}"


@task(task_run_name=train_run_name, cache_policy=stage_cache_policy(excluded=("tracking",)))
def train_candidate(chosen: ChosenTrial, job: TrainingJob, sweep: SweepConfig, tracking: TrackingRef) -> TrainedModel:
    """The model that is evaluated and registered: with `sweep.final: best_trial`, the chosen trial's best
    checkpoint as it is (retrained into its own directory only if its files are gone or changed); with
    `refit`, a fresh full-budget run of `job` with the chosen params (on train + val if asked), as the nested
    MLflow run `final-training`."""
    job = job.with_params(chosen.params)
    if sweep.final == "refit":
        return refit(job, sweep.refit_with_val, tracking)
    result, adapter = chosen.result, chosen.adapter
    if adapter.output_problems():
        get_run_logger().warning(
            "trial %s's adapter %s is missing or changed: retraining its recipe into its directory",
            chosen.number,
            adapter.path,
        )
        result = job.run(Path(adapter.path).parent)
        adapter = AdapterRef.of(result.adapter_dir, result.method)
    return TrainedModel(
        result=result, adapter=adapter, source=f"trial {chosen.number}", mlflow_run_id=chosen.mlflow_run_id
    )


def refit(job: TrainingJob, with_val: bool, tracking: TrackingRef) -> TrainedModel:
    """Retrain `job` from scratch on its budget (on train + val when `with_val`), as the nested MLflow run
    `final-training`, into its own directory."""
    from tunegate.training.callbacks import MlflowMetrics, TrainingProgress

    recipe, plan = job.recipe, job.plan
    searched = {name: getattr(recipe, name) for name in searched_params(recipe.method)}
    with tracking.child_run(f"final-training {short_params(searched)}") as run:
        for name in (*searched, *LOGGED_RECIPE, "processes"):
            run.client.log_param(run.run_id, name, getattr(recipe, name))
        run.client.log_param(run.run_id, "max_steps", plan.max_steps)
        out_dir = job.directory("train/refit", __file__, fingerprint_value(with_val))
        if recipe.processes > 1:
            result = train_in_processes(job, out_dir, (tracking.uri, run.run_id), train_on_val_too=with_val)
        else:
            result = job.run(
                out_dir,
                on_evaluate=lambda step, metrics: log_metrics(run.client, run.run_id, metrics, step),
                callbacks=[MlflowMetrics(run.client, run.run_id), TrainingProgress(plan.max_steps)],
                train_on_val_too=with_val,
            )
        log_metrics(run.client, run.run_id, run_summary_metrics(result), step=result.steps)
    adapter = AdapterRef.of(result.adapter_dir, result.method)
    return TrainedModel(result=result, adapter=adapter, source="refit", mlflow_run_id=run.run_id)
