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

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from prefect import task
from pydantic import BaseModel

from tunegate.budget import TrainingPlan
from tunegate.caching import bound_to_home, stage_cache_policy
from tunegate.code_version import code_fingerprint
from tunegate.config import ModelConfig, PipelineConfig, SweepConfig, TrainConfig
from tunegate.errors import ServiceUnavailable, one_line
from tunegate.fingerprint import combine, fingerprint_file, fingerprint_value
from tunegate.progress import SWEEP_KEY, ProgressArtifact, sweep_description
from tunegate.refs import AdapterRef, write_text_atomic
from tunegate.retrying import retry_unless_input_error
from tunegate.scoring import tie_broken
from tunegate.search_space import ordered_params, search_space, short_params
from tunegate.secrets import redact
from tunegate.stage_results import ChosenTrial, StudyRef, SweepResult, TrainResult
from tunegate.stages import run_logger, verified
from tunegate.tracking import ChildRun, TrackingRef, owner_is_dead, owner_tags
from tunegate.training import TrainingJob, log_metrics, run_summary_metrics

RESULT_ATTR = "result"  # the trial's TrialResult as JSON, on the Optuna trial
QUEUED_ATTR = "queued"  # why a trial's point was queued (warm start, a re-run of a trial that died)
OWNER_ATTR = "owner"  # host, pid and boot of the process running the trial (a dead owner's trial is re-queued)
# A redrawn point is drawn again; 8 draws of a continuous learning rate all hitting taken points does not happen.
MAX_REDRAWS = 8
# A locked SQLite file or a restarting database: 1 + 2 + 4 s covers a busy writer or a failover, not an outage.
STORAGE_RETRY_SECONDS = (1, 2, 4)


class TrialResult(BaseModel):
    """One trial's outcome; `value` is its best objective (the last reported one when pruned)."""

    params: dict[str, float | int]
    state: str  # "complete" or "pruned"
    value: float
    steps: int
    mlflow_run_id: str | None
    reason: str = ""  # why it was pruned: the pruner, or a health issue
    train: TrainResult | None = None  # complete trials: the run and its saved best checkpoint
    adapter_fingerprint: str | None = None

    @property
    def adapter(self) -> AdapterRef | None:
        """The saved best checkpoint of a complete trial."""
        if self.train is None:
            return None
        return AdapterRef(
            path=self.train.adapter_dir, fingerprint=self.adapter_fingerprint or "", method=self.train.method
        )

    def output_problems(self) -> list[str]:
        return self.adapter.output_problems() if self.adapter else []


def study_name(
    pipeline_name: str,
    data_fingerprint: str,
    model: ModelConfig,
    train: TrainConfig,
    sweep: SweepConfig,
    plan: Any,
    trial_code: str,
) -> str:
    """Same data, same search and same trial code → same study (a rerun continues it); n_trials, the runner and
    the time budget do not count. `trial_code` is the code fingerprint of the trials (this module's closure):
    without it a changed trainer left the old study's finished trials, and the adapter the old code trained,
    standing for the new code (the DPO tokenization fix only took effect once the study was deleted)."""
    search = sweep.model_dump(
        include={
            "lora_ranks",
            "virtual_tokens",
            "trial_max_steps",
            "rungs",
            "pruner",
            "startup_trials",
            "reduction_factor",
            "seed",
            "objective_rows",
        }
    )
    # The range as searched, so a config that spells out a method's default range names the same study.
    search["learning_rate_min"], search["learning_rate_max"] = sweep.learning_rate_range(train.method, train.objective)
    # Searched params and the refit's process layout do not name the study (trials train in one process).
    recipe = train.model_dump(exclude={"lora_r", "num_virtual_tokens", "learning_rate", "processes", "sharding"})
    key = combine(data_fingerprint, trial_code, fingerprint_value([search, recipe, model, plan]))
    return f"{pipeline_name}-{key[:12]}"


def storage_url(sweep: SweepConfig, home: Path) -> str:
    return sweep.storage or f"journal:{home / 'optuna' / 'journal.log'}"


def study_for(config: PipelineConfig, data_fingerprint: str, plan: TrainingPlan) -> StudyRef:
    """The pipeline's study for these data and this search, in the configured storage."""
    trial_code = code_fingerprint(__file__)
    name = study_name(config.name, data_fingerprint, config.model, config.train, config.sweep, plan, trial_code)
    return StudyRef(name=name, storage=storage_url(config.sweep, config.home_path()), sweep=config.sweep)


def open_study(name: str, storage: str, sweep: SweepConfig, plan: TrainingPlan) -> Any:
    """Create or load the study: seeded TPE, the configured pruner with rungs below the plan's budget,
    maximising the task metric or minimising val loss."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruners = {
        "successive_halving": lambda: optuna.pruners.SuccessiveHalvingPruner(
            min_resource=plan.first_rung, reduction_factor=sweep.reduction_factor
        ),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(
            min_resource=plan.first_rung, max_resource=plan.max_steps, reduction_factor=sweep.reduction_factor
        ),
        "none": optuna.pruners.NopPruner,
    }
    study = with_storage_retries(
        storage,
        lambda: optuna.create_study(
            study_name=name,
            storage=optuna_storage(storage),
            pruner=pruners[sweep.pruner](),
            direction=study_direction(plan),
            load_if_exists=True,
        ),
    )
    # Seeded by the trials the study already has: a sampler re-seeded with `seed` alone on every resume would
    # replay its first random draws, and a resumed or topped-up sweep would train the points it already has.
    existing = len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=sweep.seed + existing, n_startup_trials=sweep.startup_trials)
    return study


def with_storage_retries(storage: str, open_storage: Any) -> Any:
    """Open the study, retrying a storage that is locked or does not answer (STORAGE_RETRY_SECONDS apart);
    then fail with one line naming it (password redacted)."""
    from sqlalchemy.exc import OperationalError

    for delay in STORAGE_RETRY_SECONDS:
        try:
            return open_storage()
        except OperationalError as exc:
            run_logger().warning("Optuna storage %s: %s; retrying in %s s", redact(storage), one_line(exc), delay)
            time.sleep(delay)
    try:
        return open_storage()
    except OperationalError as exc:
        tries = len(STORAGE_RETRY_SECONDS) + 1
        raise ServiceUnavailable(
            f"Optuna storage {redact(storage)} unreachable after {tries} tries ({one_line(exc.orig or exc)})"
        ) from exc


def study_direction(plan: TrainingPlan) -> str:
    return "maximize" if plan.greater_is_better else "minimize"


def optuna_storage(url: str) -> Any:
    """`journal:<path>` is a journal file (safe for several processes on one host); anything else an RDB URL."""
    if not url.startswith("journal:"):
        return url
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = Path(url.removeprefix("journal:"))
    path.parent.mkdir(parents=True, exist_ok=True)
    repair_journal(path)
    return JournalStorage(JournalFileBackend(str(path)))


def repair_journal(path: Path) -> int:
    """Cut a journal back to its last intact line, under Optuna's own journal lock; returns the bytes cut.

    A writer killed mid-append leaves a line without its newline; the next append would glue onto it and every
    later read fails ("Invalid log format"). The journal is replayed in order, so everything from the first bad
    line on is cut (and kept next to it as `<name>.cut-<time>` for inspection): the rest stays consistent."""
    from optuna.storages.journal import JournalFileSymlinkLock

    if not path.is_file() or path.stat().st_size == 0:
        return 0
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        data = path.read_bytes()
        intact = intact_journal_prefix(data)
        if intact == len(data):
            return 0
        (path.parent / f"{path.name}.cut-{time.strftime('%Y%m%d-%H%M%S')}").write_bytes(data[intact:])
        with open(path, "r+b") as handle:
            handle.truncate(intact)
    finally:
        lock.release()
    logging.getLogger("tunegate").warning(
        "Optuna journal %s: cut %d bytes from its first torn or unreadable line on (a writer was killed)",
        path,
        len(data) - intact,
    )
    return len(data) - intact


def intact_journal_prefix(data: bytes) -> int:
    """Length of the longest prefix of whole lines that are each valid JSON."""
    offset = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            json.loads(line)
        except ValueError:
            break
        offset += len(line)
    return offset


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

    from tunegate.callbacks import MlflowMetrics

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


def pruned_trial(run: ChildRun, params: dict[str, float | int], value: float, steps: int, reason: str) -> TrialResult:
    """Have the trial's MLflow run end KILLED and describe it as pruned (by the pruner or for its health)."""
    run.end_status = "KILLED"
    return TrialResult(params=params, state="pruned", value=value, steps=steps, mlflow_run_id=run.run_id, reason=reason)


def reporting_trial(study: StudyRef, trial_number: int, plan: TrainingPlan) -> Any:
    """The running trial, reattached from storage, so this task can report to the pruner wherever it runs."""
    import optuna

    loaded = open_study(study.name, study.storage, study.sweep, plan)
    # Optuna has no public lookup from a trial number to the storage's trial id; this one has been stable since 2.x.
    trial_id = loaded._storage.get_trial_id_from_study_id_trial_number(loaded._study_id, trial_number)
    return optuna.trial.Trial(loaded, trial_id)


def run_sweep(
    study: StudyRef, job: TrainingJob, tracking: TrackingRef, warm_start: list[dict[str, float | int]] | None = None
) -> SweepResult:
    """Top the study up to n_trials (or until `timeout_minutes`), `parallel_trials` at a time through the flow's
    task runner, each trial training `job` with its params; `warm_start` params (a previous study's best) are
    enqueued first, once. Ends by logging the study's plots to the pipeline run."""
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
    log_study_plots(study, plan, tracking, Path(job.home) / "sweeps" / study.name)
    return summarize_study(optuna_study, study.name, study.storage, plan).model_copy(
        update={"trials_run": trials_run, "stopped_by_timeout": timed_out}
    )


def requeue_orphaned_trials(study: Any) -> list[int]:
    """Fail every RUNNING trial whose process died (kill -9, a lost worker) and queue its point again, so the
    next trial with it resumes from that point's checkpoints; returns the failed trial numbers."""
    import optuna

    failed = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner = trial.user_attrs.get(OWNER_ATTR)
        if owner is not None and not owner_is_dead(owner):
            continue
        try:
            study._storage.set_trial_user_attr(trial._trial_id, "failed_because", "its process died")
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        except (RuntimeError, ValueError):  # another run failed it first
            continue
        study.enqueue_trial(dict(trial.params), user_attrs={QUEUED_ATTR: f"again after trial {trial.number} died"})
        failed.append(trial.number)
    if failed:
        run_logger().warning("trials %s had died mid-run: failed and their points queued again", failed)
    return failed


def ask_new_point(study: Any, space: dict[str, Any]) -> Any:
    """A new trial at a point no finished, running or pruned trial has (queued points are taken as they are);
    a redrawn point is told FAIL ("duplicate") and drawn again, at most MAX_REDRAWS times."""
    import optuna

    taken = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.RUNNING)
    seen = {point_key(t.params) for t in study.get_trials(deepcopy=False, states=taken)}
    for _ in range(MAX_REDRAWS):
        trial = study.ask(space)
        trial.set_user_attr(OWNER_ATTR, owner_tags())
        if QUEUED_ATTR in trial.user_attrs or point_key(trial.params) not in seen:
            return trial
        trial.set_user_attr("failed_because", "duplicate of an earlier trial's point")
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    return trial


def point_key(params: dict[str, Any]) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((name, float(value)) for name, value in params.items()))


def record_outcome(study: Any, trial: Any, outcome: TrialResult) -> None:
    """Tell Optuna the trial's state and value and keep its result (and the checkpoint it saved) on the trial."""
    import optuna

    trial.set_user_attr("steps", outcome.steps)
    trial.set_user_attr(RESULT_ATTR, outcome.model_dump_json())
    if outcome.state == "pruned":
        study.tell(trial.number, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial.number, outcome.value)


def sweep_progress(study: Any, total: int, plan: TrainingPlan) -> tuple[int, str]:
    """(trials finished, progress description) from one read of the study's trials."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in trials)
    finished = sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) + pruned
    best = best_complete_trial(trials, plan.greater_is_better)
    return finished, sweep_description(
        finished, total, pruned, (best.value, best.params) if best else None, metric=plan.metric
    )


def best_complete_trial(trials: list[Any], maximize: bool) -> Any | None:
    """The best complete trial (pruned and unhealthy trials are never complete); ties on the objective (common for
    accuracy on a few hundred rows) go to the lower val loss, then to the earlier trial."""
    import optuna

    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and RESULT_ATTR in t.user_attrs]
    if not done:
        return None

    def rank(t: Any) -> tuple[float, float, int]:
        val_loss = json.loads(t.user_attrs[RESULT_ATTR])["train"]["best_val_loss"]
        return (-t.value if maximize else t.value, val_loss if val_loss is not None else math.inf, t.number)

    return min(done, key=rank)


def best_trials_of(name: str, storage: str, count: int) -> list[dict[str, float | int]]:
    """Params of a study's `count` best complete trials (for warm-starting its successor); [] if it has none."""
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=optuna_storage(storage))
    except KeyError:
        return []
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    return [dict(t.params) for t in sorted(done, key=lambda t: -t.value if maximize else t.value)[:count]]


def has_complete_trial(study: Any) -> bool:
    import optuna

    return bool(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def finished_trials(study: Any) -> int:
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=done))


class NoCompleteTrial(RuntimeError):
    """Every trial was pruned or unhealthy: there is no candidate to evaluate."""


def summarize_study(study: Any, name: str, storage: str, plan: TrainingPlan) -> SweepResult:
    import optuna

    trials = study.get_trials(deepcopy=False)
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    best = best_complete_trial(trials, plan.greater_is_better)
    if best is None:
        reasons = sorted(
            {json.loads(t.user_attrs[RESULT_ATTR])["reason"] for t in pruned if RESULT_ATTR in t.user_attrs}
        )
        raise NoCompleteTrial(
            f"study {name}: none of {len(trials)} trials completed healthy ({'; '.join(reasons)[:500]}); "
            "widen sweep.learning_rate_min/max, add trials, or lower the pruner's aggressiveness"
        )
    outcome = TrialResult.model_validate_json(best.user_attrs[RESULT_ATTR])
    return SweepResult(
        study_name=name,
        storage=storage,
        objective=plan.metric,
        direction=study_direction(plan),
        n_trials=finished_trials(study),
        n_pruned=len(pruned),
        best_params=ordered_params(best.params),
        best_value=float(best.value),
        trial_steps_total=sum(int(t.user_attrs.get("steps", 0)) for t in trials),
        chosen=ChosenTrial(
            number=best.number,
            params=ordered_params(best.params),
            result=outcome.train,
            adapter=outcome.adapter,
            mlflow_run_id=outcome.mlflow_run_id,
        ),
    )


def log_study_plots(study_ref: StudyRef, plan: TrainingPlan, tracking: TrackingRef, out_dir: Path) -> list[str]:
    """Optimization history, parameter importances and the rank × learning-rate contour, as one HTML artifact
    (`sweep/sweep_report.html`) that embeds plotly.js once, so it opens offline. Drawing takes ~2 s (the
    importances fit a random forest), so an unchanged study reuses the report it drew last time."""
    study = open_study(study_ref.name, study_ref.storage, study_ref.sweep, plan)
    out_dir.mkdir(parents=True, exist_ok=True)
    report, stamp = out_dir / "sweep_report.html", out_dir / "sweep_report.json"
    key = combine(
        fingerprint_file(__file__),
        fingerprint_value([[t.number, t.state.name, t.value, t.params] for t in study.get_trials(deepcopy=False)]),
    )
    previous = read_report_stamp(stamp)
    if previous.get("key") == key and report.exists():
        drawn = previous["drawn"]
    else:
        drawn = draw_study_report(study, study_ref.name, report)
        write_text_atomic(stamp, json.dumps({"key": key, "drawn": drawn}))
    tracking.client().log_artifact(tracking.parent_run_id, str(report), artifact_path="sweep")
    return drawn


def read_report_stamp(stamp: Path) -> dict[str, Any]:
    """The last drawing's key and plots; a missing or unreadable stamp (a torn write) means draw again."""
    try:
        previous = json.loads(stamp.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        run_logger().warning("sweep report stamp %s is unreadable (%s): drawing the report again", stamp, exc)
        return {}
    return previous if isinstance(previous, dict) and isinstance(previous.get("drawn"), list) else {}


def draw_study_report(study: Any, name: str, report: Path) -> list[str]:
    from optuna import visualization

    searched = list(ordered_params(study.trials[0].params)) if study.trials else []
    plots = {
        "optimization_history": lambda: visualization.plot_optimization_history(study),
        "param_importances": lambda: visualization.plot_param_importances(study),
        f"contour_{'_'.join(searched)}": lambda: visualization.plot_contour(study, params=searched),
    }
    sections, drawn = [], []
    for plot_name, make in plots.items():
        try:
            figure = make()
        except (ValueError, RuntimeError):  # e.g. importances need two finished trials with different params
            continue
        sections.append(f"<h2>{plot_name}</h2>" + figure.to_html(full_html=False, include_plotlyjs=not drawn))
        drawn.append(plot_name)
    report.write_text(f"<html><body><h1>Study {name}</h1>{''.join(sections)}</body></html>", encoding="utf-8")
    return drawn
