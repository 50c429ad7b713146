"""Sweep: Optuna search over LoRA rank x learning rate at the budget the model ships with, each trial a cached,
retriable Prefect task.

Every trial trains on the final budget (`train.epochs`, capped by `train.max_steps`) and reports the sweep
objective (by default the task metric of greedy generations on validation rows) at the rungs below it
(budget / rf^k), where successive halving or Hyperband stops the unpromising ones. A trial keeps its best
checkpoint by the objective; the best complete, healthy trial's checkpoint is the candidate the flow evaluates
and registers (no second training run). The study (seeded TPE) lives in the configured storage (a journal file
under home by default, any Optuna RDB URL to share it) and is named from the data fingerprint and the search, so a
rerun continues it and only tops it up to `n_trials`; each trial's result is stored on its Optuna trial, so the
chosen trial can come from an earlier run. A trial task is cached on (params, data, plan, study): the same trial
twice costs nothing.
"""

from __future__ import annotations

import math
import time
from typing import Any

from prefect import task

from tunegate.config.pipeline import PipelineConfig
from tunegate.config.search_space import ordered_params, search_space, short_params
from tunegate.core.fingerprint import fingerprint_value
from tunegate.core.refs import AdapterRef
from tunegate.evaluation.scoring import tie_broken
from tunegate.runtime.caching import bound_to_home, stage_cache_policy
from tunegate.runtime.code_version import code_fingerprint
from tunegate.runtime.progress import SWEEP_KEY, ProgressArtifact
from tunegate.runtime.retrying import retry_unless_input_error
from tunegate.runtime.stages import verified
from tunegate.runtime.tracking import ChildRun, TrackingRef, log_metrics, owner_tags
from tunegate.sweep.results import StudyRef, SweepResult
from tunegate.sweep.study import open_study, storage_url, study_name
from tunegate.sweep.trials import (
    OWNER_ATTR,
    QUEUED_ATTR,
    TrialResult,
    ask_new_point,
    finished_trials,
    has_complete_trial,
    pruned_trial,
    record_outcome,
    reporting_trial,
    requeue_orphaned_trials,
    summarize_study,
    sweep_progress,
)
from tunegate.training.budget import TrainingPlan
from tunegate.training.job import TrainingJob, run_summary_metrics


def study_for(config: PipelineConfig, data_fingerprint: str, plan: TrainingPlan) -> StudyRef:
    """The pipeline's study for these data and this search, in the configured storage."""
    trial_code = code_fingerprint(__file__)
    name = study_name(config.name, data_fingerprint, config.model, config.train, config.sweep, plan, trial_code)
    return StudyRef(name=name, storage=storage_url(config.sweep, config.home_path()), sweep=config.sweep)


# `study_key` (the study's name) is in the key: whether a trial was pruned depends on its study's pruner and on
# the trials before it, so the same params under another pruner (say "none") must train again.
def trial_run_name() -> str:
    """`trial-3 r=16 lr=2.1e-03`: what tells one trial from another in the Prefect UI's run graph."""
    from prefect.runtime import task_run

    parameters = task_run.parameters
    return f"trial-{parameters['trial_number']} {short_params(ordered_params(parameters['params']))}"


@task(
    task_run_name=trial_run_name,
    cache_policy=stage_cache_policy(excluded=("trial_number", "study", "tracking")),
    retries=1,
    retry_delay_seconds=5,
    retry_condition_fn=retry_unless_input_error,
)
def run_trial(
    params: dict[str, float | int],
    job: TrainingJob,
    trial_number: int,
    study: StudyRef,
    tracking: TrackingRef,
    study_key: str,
) -> TrialResult:
    """Train `job` with `params`, reporting val loss and the objective at every rung to the pruner and to a nested
    MLflow run; an unhealthy run (non-finite or flat loss, spiking gradients) is pruned."""
    trial = reporting_trial(study, trial_number, job.plan)
    # The process that trains owns the trial (a Dask or pool worker, not the flow that asked for it): if it dies,
    # the next run sees a dead owner and queues the point again.
    trial.set_user_attr(OWNER_ATTR, owner_tags())
    name = f"trial-{trial_number} {short_params(ordered_params(params))}"
    with tracking.child_run(name, tags={"optuna.study": study.name, "optuna.trial": str(trial_number)}) as run:
        for param, value in ordered_params(params).items():
            run.client.log_param(run.run_id, param, value)
        return train_trial(params, job, trial, run)


def train_trial(params: dict[str, float | int], job: TrainingJob, trial: Any, run: ChildRun) -> TrialResult:
    """The trial's training, reporting to the pruner and to its MLflow run; a pruned or unhealthy trial's run
    ends KILLED."""
    import optuna

    from tunegate.training.callbacks import MlflowMetrics

    plan = job.plan
    reported: list[tuple[int, float]] = []

    def report(step: int, metrics: dict[str, float]) -> None:
        reported.append((step, metrics[plan.metric]))
        log_metrics(run.client, run.run_id, metrics, step)
        # The pruner sees the objective with ties broken by val loss (as the checkpoint choice does): when every
        # trial still scores 0 at a rung, successive halving would otherwise promote them all.
        value = tie_broken(metrics[plan.metric], metrics["val_loss"]) if plan.greater_is_better else metrics["val_loss"]
        trial.report(value, step)
        # The top rung is the shipped budget: a trial that reached it is complete, never pruned there. Until one
        # trial has completed, none is pruned (asynchronous successive halving compares with whatever reached a
        # rung first, pruned or unhealthy trials included): the study always gets a candidate.
        verdict = trial.should_prune()  # records the rung value either way
        if step < plan.max_steps and verdict and has_complete_trial(trial.study):
            raise optuna.TrialPruned(f"pruned at step {step}: {plan.metric} {metrics[plan.metric]:.4f}")

    try:
        result = job.with_params(params).run(
            job.directory("trials/trial", __file__, fingerprint_value(params)),
            on_evaluate=report,
            callbacks=[MlflowMetrics(run.client, run.run_id)],
        )
    except optuna.TrialPruned as pruned:
        step, value = reported[-1]
        return pruned_trial(run, params, value, step, str(pruned))
    log_metrics(run.client, run.run_id, run_summary_metrics(result), step=result.steps)
    if not result.health.healthy:
        issues = "; ".join(result.health.issues)
        run.client.set_tag(run.run_id, "health", issues)
        return pruned_trial(run, params, result.best_objective, result.steps, f"unhealthy: {issues}")
    return TrialResult(
        params=params,
        state="complete",
        value=result.best_objective,
        steps=result.steps,
        mlflow_run_id=run.run_id,
        train=result,
        adapter_fingerprint=AdapterRef.of(result.adapter_dir, result.method).fingerprint,
    )


def run_sweep(
    study: StudyRef, job: TrainingJob, tracking: TrackingRef, warm_start: list[dict[str, float | int]] | None = None
) -> SweepResult:
    """Top the study up to n_trials (or until `timeout_minutes`), `parallel_trials` at a time through the flow's
    task runner, each trial training `job` with its params; `warm_start` params (a previous study's best) are
    enqueued first, once. (The flow draws the study's plots after it: `tunegate.sweep.plots`.)"""
    sweep, plan = study.sweep, job.plan
    optuna_study = open_study(study.name, study.storage, sweep, plan)
    requeue_orphaned_trials(optuna_study)
    for params in warm_start or []:
        optuna_study.enqueue_trial(params, user_attrs={QUEUED_ATTR: "warm start"}, skip_if_exists=True)
    bound_trial = bound_to_home(run_trial, job.home)  # result store and locks under home, for every trial
    deadline = time.monotonic() + sweep.timeout_minutes * 60 if sweep.timeout_minutes else math.inf
    trials_run, timed_out = 0, False
    finished, description = sweep_progress(optuna_study, sweep.n_trials, plan)
    progress = ProgressArtifact(SWEEP_KEY, finished, sweep.n_trials, description)
    while (missing := sweep.n_trials - finished_trials(optuna_study)) > 0:
        if time.monotonic() >= deadline:
            timed_out = True
            break
        space = search_space(sweep, job.recipe.method, job.recipe.objective)
        asked = [ask_new_point(optuna_study, space) for _ in range(min(missing, sweep.parallel_trials))]
        arguments = [(dict(t.params), job, t.number, study, tracking, study.name) for t in asked]
        futures = [bound_trial.submit(*trial_arguments) for trial_arguments in arguments]
        for trial, future, trial_arguments in zip(asked, futures, arguments, strict=True):
            future.wait()
            state = verified(f"trial {trial.number}", future.state, bound_trial, *trial_arguments)
            trials_run += state.name != "Cached"
            record_outcome(optuna_study, trial, state.result())
            finished, description = sweep_progress(optuna_study, sweep.n_trials, plan)
            progress.update(finished, sweep.n_trials, description)
    rates = sweep.learning_rate_range(job.recipe.method, job.recipe.objective)
    return summarize_study(optuna_study, study.name, study.storage, plan, rates).model_copy(
        update={"trials_run": trials_run, "stopped_by_timeout": timed_out}
    )
