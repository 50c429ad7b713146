"""Sweep: Optuna search over LoRA rank × learning rate, each trial a cached, retriable Prefect task.

The study (seeded TPE sampler, successive-halving or Hyperband pruner) lives in the configured storage
(a journal file under home by default, any Optuna RDB URL to share it between machines) and is named
from the data fingerprint and the training config, so a rerun continues it and only tops it up to
`n_trials`. Trials are asked for in the flow and submitted through the flow's task runner; each reports
its validation loss to the pruner at every evaluation and logs into its own nested MLflow run. A trial
task is cached on (params, data, budget): the same trial twice costs nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import task
from pydantic import BaseModel

from tasks.train import run_training
from tunegate.caching import stage_cache_policy
from tunegate.config import ModelConfig, SweepConfig, TrainConfig
from tunegate.fingerprint import combine, fingerprint_file, fingerprint_value
from tunegate.progress import SWEEP_KEY, ProgressArtifact, sweep_description
from tunegate.refs import TableRef
from tunegate.tracking import mlflow_client, start_child_run

SEARCH_PARAMS = ("lora_r", "learning_rate")


class TrialResult(BaseModel):
    """One trial's outcome; `value` is its best validation loss (the last reported one when pruned)."""

    params: dict[str, float | int]
    state: str  # "complete" or "pruned"
    value: float
    steps: int
    mlflow_run_id: str | None


class SweepResult(BaseModel):
    """The study after this run's trials."""

    study_name: str
    storage: str
    n_trials: int
    n_pruned: int
    best_params: dict[str, float | int]
    best_value: float
    trial_steps_total: int
    trials_run: int = 0  # trial tasks this run executed (not served from cache)


def study_name(
    pipeline_name: str, data_fingerprint: str, model: ModelConfig, train: TrainConfig, sweep: SweepConfig
) -> str:
    """Same data and same search → same study (a rerun continues it); n_trials and the runner do not count."""
    search = sweep.model_dump(
        include={
            "lora_ranks",
            "learning_rate_min",
            "learning_rate_max",
            "trial_max_steps",
            "trial_eval_steps",
            "pruner",
            "startup_trials",
            "reduction_factor",
            "seed",
        }
    )
    recipe = train.model_dump(exclude={"lora_r", "learning_rate", "max_steps"})
    return f"{pipeline_name}-{combine(data_fingerprint, fingerprint_value([search, recipe, model]))[:12]}"


def storage_url(sweep: SweepConfig, home: Path) -> str:
    return sweep.storage or f"journal:{home / 'optuna' / 'journal.log'}"


def open_study(name: str, storage: str, sweep: SweepConfig) -> Any:
    """Create or load the study: seeded TPE, the configured pruner, minimising validation loss."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruners = {
        "successive_halving": lambda: optuna.pruners.SuccessiveHalvingPruner(
            min_resource=sweep.trial_eval_steps, reduction_factor=sweep.reduction_factor
        ),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(
            min_resource=sweep.trial_eval_steps,
            max_resource=sweep.trial_max_steps,
            reduction_factor=sweep.reduction_factor,
        ),
        "none": optuna.pruners.NopPruner,
    }
    return optuna.create_study(
        study_name=name,
        storage=optuna_storage(storage),
        sampler=optuna.samplers.TPESampler(seed=sweep.seed, n_startup_trials=sweep.startup_trials),
        pruner=pruners[sweep.pruner](),
        direction="minimize",
        load_if_exists=True,
    )


def optuna_storage(url: str) -> Any:
    """`journal:<path>` is a journal file (safe for several processes on one host); anything else an RDB URL."""
    if not url.startswith("journal:"):
        return url
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = Path(url.removeprefix("journal:"))
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def search_space(sweep: SweepConfig) -> dict[str, Any]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    return {
        "lora_r": CategoricalDistribution(sweep.lora_ranks),
        "learning_rate": FloatDistribution(sweep.learning_rate_min, sweep.learning_rate_max, log=True),
    }


# `study_key` (the study's name) is in the key: whether a trial was pruned depends on its study's pruner and on
# the trials before it, so the same params under another pruner (say "none") must train again.
@task(
    cache_policy=stage_cache_policy(excluded=("trial_number", "study", "tracking")),
    retries=1,
    retry_delay_seconds=5,
)
def run_trial(
    params: dict[str, float | int],
    train: TableRef,
    val: TableRef,
    model: ModelConfig,
    budget: TrainConfig,
    home: str,
    trial_number: int,
    study: dict[str, str],
    tracking: dict[str, str],
    study_key: str,
) -> TrialResult:
    """Train with `params` on the trial budget, reporting val loss to the pruner and to a nested MLflow run."""
    import optuna

    from tunegate.callbacks import MlflowMetrics

    key = combine(fingerprint_value(params), train.fingerprint, val.fingerprint, fingerprint_value([model, budget]))
    trial = reporting_trial(study, trial_number)
    client = mlflow_client(tracking["uri"])
    run_id = start_child_run(
        client,
        tracking["experiment_id"],
        tracking.get("parent_run_id"),
        f"trial-{trial_number} r={params['lora_r']} lr={params['learning_rate']:.1e}",
        tags={"optuna.study": study["name"], "optuna.trial": str(trial_number)},
    )
    client.log_param(run_id, "lora_r", params["lora_r"])
    client.log_param(run_id, "learning_rate", params["learning_rate"])
    reported: list[tuple[int, float]] = []

    def report(step: int, loss: float) -> None:
        reported.append((step, loss))
        client.log_metric(run_id, "val_loss", loss, step=step)
        trial.report(loss, step)
        if trial.should_prune():
            raise optuna.TrialPruned()

    config = budget.model_copy(
        update={"lora_r": int(params["lora_r"]), "learning_rate": float(params["learning_rate"])}
    )
    try:
        result = run_training(
            train.read(),
            val.read(),
            model,
            config,
            Path(home) / "trials" / key[:16],
            on_evaluate=report,
            callbacks=[MlflowMetrics(client, run_id)],
        )
    except optuna.TrialPruned:
        client.set_terminated(run_id, status="KILLED")
        return TrialResult(
            params=params, state="pruned", value=reported[-1][1], steps=reported[-1][0], mlflow_run_id=run_id
        )
    client.set_terminated(run_id)
    return TrialResult(
        params=params, state="complete", value=result.best_val_loss, steps=result.steps, mlflow_run_id=run_id
    )


def reporting_trial(study: dict[str, str], trial_number: int) -> Any:
    """The running trial, reattached from storage, so this task can report to the pruner wherever it runs."""
    import optuna

    loaded = open_study(study["name"], study["storage"], SweepConfig.model_validate_json(study["sweep"]))
    # Optuna has no public lookup from a trial number to the storage's trial id; this one has been stable since 2.x.
    trial_id = loaded._storage.get_trial_id_from_study_id_trial_number(loaded._study_id, trial_number)
    return optuna.trial.Trial(loaded, trial_id)


def run_sweep(
    name: str,
    storage: str,
    sweep: SweepConfig,
    train: TableRef,
    val: TableRef,
    model: ModelConfig,
    train_config: TrainConfig,
    home: str,
    tracking: dict[str, str],
    warm_start: list[dict[str, float | int]] | None = None,
) -> SweepResult:
    """Top the study up to n_trials, `parallel_trials` at a time through the flow's task runner; `warm_start`
    params (a previous study's best) are enqueued first, once."""
    import optuna

    study = open_study(name, storage, sweep)
    for params in warm_start or []:
        study.enqueue_trial(params, skip_if_exists=True)
    budget = train_config.model_copy(
        update={
            "max_steps": sweep.trial_max_steps,
            "eval_steps": sweep.trial_eval_steps,
            "save_steps": sweep.trial_eval_steps,
            "early_stopping_patience": 10**6,
        }
    )
    study_ref = {"name": name, "storage": storage, "sweep": sweep.model_dump_json()}
    trials_run = 0
    finished, description = sweep_progress(study, sweep.n_trials)
    progress = ProgressArtifact(SWEEP_KEY, finished, sweep.n_trials, description)
    while (missing := sweep.n_trials - finished_trials(study)) > 0:
        asked = [study.ask(search_space(sweep)) for _ in range(min(missing, sweep.parallel_trials))]
        futures = [
            run_trial.submit(dict(t.params), train, val, model, budget, home, t.number, study_ref, tracking, name)
            for t in asked
        ]
        for trial, future in zip(asked, futures, strict=True):
            outcome = future.result()
            trials_run += future.state.name != "Cached"
            trial.set_user_attr("steps", outcome.steps)
            if outcome.state == "pruned":
                study.tell(trial.number, state=optuna.trial.TrialState.PRUNED)
            else:
                study.tell(trial.number, outcome.value)
            finished, description = sweep_progress(study, sweep.n_trials)
            progress.update(finished, sweep.n_trials, description)
    return summarize_study(study, name, storage).model_copy(update={"trials_run": trials_run})


def sweep_progress(study: Any, total: int) -> tuple[int, str]:
    """(trials finished, progress description) from one read of the study's trials."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in trials)
    best = min(done, key=lambda t: t.value) if done else None
    finished = len(done) + pruned
    return finished, sweep_description(finished, total, pruned, (best.value, best.params) if best else None)


def best_trials_of(name: str, storage: str, sweep: SweepConfig, count: int) -> list[dict[str, float | int]]:
    """Params of a study's `count` best finished trials (for warm-starting its successor); [] if it has none."""
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=optuna_storage(storage))
    except KeyError:
        return []
    done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    return [dict(t.params) for t in sorted(done, key=lambda t: t.value)[:count]]


def finished_trials(study: Any) -> int:
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=done))


def summarize_study(study: Any, name: str, storage: str) -> SweepResult:
    import optuna

    trials = study.get_trials(deepcopy=False)
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    return SweepResult(
        study_name=name,
        storage=storage,
        n_trials=finished_trials(study),
        n_pruned=len(pruned),
        best_params={k: study.best_params[k] for k in SEARCH_PARAMS},
        best_value=float(study.best_value),
        trial_steps_total=sum(int(t.user_attrs.get("steps", 0)) for t in trials),
    )


def log_study_plots(name: str, storage: str, sweep: SweepConfig, tracking: dict[str, str], out_dir: Path) -> list[str]:
    """Optimization history, parameter importances and the rank × learning-rate contour, as one HTML artifact
    (`sweep/sweep_report.html`) that embeds plotly.js once, so it opens offline. Drawing takes ~2 s (the
    importances fit a random forest), so an unchanged study reuses the report it drew last time."""
    study = open_study(name, storage, sweep)
    out_dir.mkdir(parents=True, exist_ok=True)
    report, stamp = out_dir / "sweep_report.html", out_dir / "sweep_report.json"
    key = combine(
        fingerprint_file(__file__),
        fingerprint_value([[t.number, t.state.name, t.value, t.params] for t in study.get_trials(deepcopy=False)]),
    )
    previous = json.loads(stamp.read_text(encoding="utf-8")) if stamp.exists() else {}
    if previous.get("key") == key and report.exists():
        drawn = previous["drawn"]
    else:
        drawn = draw_study_report(study, name, report)
        stamp.write_text(json.dumps({"key": key, "drawn": drawn}), encoding="utf-8")
    mlflow_client(tracking["uri"]).log_artifact(tracking["parent_run_id"], str(report), artifact_path="sweep")
    return drawn


def draw_study_report(study: Any, name: str, report: Path) -> list[str]:
    from optuna import visualization

    plots = {
        "optimization_history": lambda: visualization.plot_optimization_history(study),
        "param_importances": lambda: visualization.plot_param_importances(study),
        "contour_lora_r_learning_rate": lambda: visualization.plot_contour(study, params=list(SEARCH_PARAMS)),
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
