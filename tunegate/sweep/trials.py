"""Trial bookkeeping on the study: each trial's result kept on its Optuna trial, new points that no earlier trial
has, trials whose process died queued again, the best complete healthy trial, and the study summed up as the
sweep's result."""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import BaseModel

from tunegate.config.search_space import ordered_params
from tunegate.core.errors import InputError
from tunegate.core.refs import AdapterRef
from tunegate.runtime.progress import sweep_description
from tunegate.runtime.stages import run_logger
from tunegate.runtime.tracking import ChildRun, owner_is_dead, owner_tags
from tunegate.sweep.results import StudyRef, SweepResult
from tunegate.sweep.study import open_study, optuna_storage, study_direction
from tunegate.training.budget import TrainingPlan
from tunegate.training.results import ChosenTrial, TrainResult

RESULT_ATTR = "result"  # the trial's TrialResult as JSON, on the Optuna trial


QUEUED_ATTR = "queued"  # why a trial's point was queued (warm start, a re-run of a trial that died)


OWNER_ATTR = "owner"  # host, pid and boot of the process running the trial (a dead owner's trial is re-queued)


# A redrawn point is drawn again; 8 draws of a continuous learning rate all hitting taken points does not happen.
MAX_REDRAWS = 8


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


class NoCompleteTrial(InputError):
    """Every trial was pruned or unhealthy: there is no candidate to evaluate. The search is the user's to change
    (exit 2, one line), not a bug."""


# Health issues that say the rate was too high for the model: the knob is the top of the rate range.
DIVERGED = ("non_finite_loss", "loss_diverging", "grad_norm_spikes")


def no_complete_trial(name: str, trials: list[Any], rate_range: tuple[float, float] | None) -> NoCompleteTrial:
    """One line: which trials diverged or stalled and why, and which setting to change."""
    reasons: dict[str, list[int]] = {}
    for trial in trials:
        if RESULT_ATTR in trial.user_attrs:
            reason = json.loads(trial.user_attrs[RESULT_ATTR])["reason"]
            reasons.setdefault(reason.removeprefix("unhealthy: ").split(":")[0], []).append(trial.number)
    described = "; ".join(f"{kind}: trials {', '.join(map(str, numbers))}" for kind, numbers in sorted(reasons.items()))
    rates = f" (now {rate_range[0]:.1e} .. {rate_range[1]:.1e})" if rate_range else ""
    if reasons and all(kind in DIVERGED for kind in reasons):
        knob = f"lower sweep.learning_rate_max{rates}: the loss diverged"
    else:
        knob = f"change sweep.learning_rate_min/max{rates}, add trials or train longer (train.max_steps)"
    return NoCompleteTrial(
        f"study {name}: none of {len(trials)} trials completed healthy ({described or 'no trial reported'}); {knob}"
    )


def summarize_study(
    study: Any, name: str, storage: str, plan: TrainingPlan, rate_range: tuple[float, float] | None = None
) -> SweepResult:
    """The sweep's result: the best complete healthy trial, or a one-line NoCompleteTrial naming what to change
    (`rate_range`: the learning rates searched, quoted in it)."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    best = best_complete_trial(trials, plan.greater_is_better)
    if best is None:
        raise no_complete_trial(name, pruned, rate_range)
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
