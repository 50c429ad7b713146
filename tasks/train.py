"""Train: the candidate the flow evaluates and registers. With `sweep.final: best_trial` (default), the sweep's best
trial's best checkpoint as it is (retrained into its own directory only if its files are gone or changed); with
`refit`, a fresh full-budget run with the chosen params. The training itself is `tunegate.training.run_training`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task

from tunegate.budget import TrainingPlan
from tunegate.caching import stage_cache_policy
from tunegate.config import ModelConfig, SweepConfig, TrainConfig
from tunegate.fingerprint import fingerprint_directory, fingerprint_value
from tunegate.refs import TableRef
from tunegate.stages import stage_directory
from tunegate.tracking import ChildRun, TrackingRef
from tunegate.training import ChosenTrial, TrainedModel, TrainResult, log_metrics, run_summary_metrics, run_training


@task(cache_policy=stage_cache_policy(excluded=("tracking",)))
def train_candidate(
    chosen: ChosenTrial,
    train: TableRef,
    val: TableRef,
    model: ModelConfig,
    train_config: TrainConfig,
    sweep: SweepConfig,
    plan: TrainingPlan,
    home: str,
    tracking: TrackingRef,
) -> TrainedModel:
    """The model that is evaluated and registered: with `sweep.final: best_trial`, the chosen trial's best
    checkpoint as it is (retrained into its own directory only if its files are gone or changed); with
    `refit`, a fresh full-budget run with the chosen params (on train + val if asked), as the nested MLflow
    run `final-training`."""
    recipe = train_config.model_copy(update=chosen.params)
    if sweep.final == "best_trial":
        adapter = Path(chosen.result.adapter_dir)
        result, fingerprint = chosen.result, chosen.adapter_fingerprint
        if not (adapter.is_dir() and fingerprint_directory(adapter) == fingerprint):
            get_run_logger().warning(
                "trial %s's adapter %s is missing or changed: retraining its recipe into its directory",
                chosen.number,
                adapter,
            )
            result = run_training(train.read(), val.read(), model, recipe, plan, adapter.parent)
            fingerprint = fingerprint_directory(result.adapter_dir)
        return TrainedModel(
            result=result,
            adapter_fingerprint=fingerprint,
            source=f"trial {chosen.number}",
            mlflow_run_id=chosen.mlflow_run_id,
        )
    return refit(train, val, model, recipe, sweep, plan, home, tracking)


def refit(
    train: TableRef,
    val: TableRef,
    model: ModelConfig,
    recipe: TrainConfig,
    sweep: SweepConfig,
    plan: TrainingPlan,
    home: str,
    tracking: TrackingRef,
) -> TrainedModel:
    """Retrain the chosen params from scratch on the final budget, as the nested MLflow run `final-training`."""
    val_rows = val.read()
    train_rows = pd.concat([train.read(), val_rows], ignore_index=True) if sweep.refit_with_val else train.read()
    with tracking.child_run(f"final-training r={recipe.lora_r} lr={recipe.learning_rate:.1e}") as run:
        for name in ("lora_r", "learning_rate", "method", "epochs", "batch_size", "gradient_accumulation_steps"):
            run.client.log_param(run.run_id, name, getattr(recipe, name))
        run.client.log_param(run.run_id, "max_steps", plan.max_steps)
        result = train_refit(train_rows, val_rows, model, recipe, sweep, plan, home, train, val, run)
    return TrainedModel(
        result=result,
        adapter_fingerprint=fingerprint_directory(result.adapter_dir),
        source="refit",
        mlflow_run_id=run.run_id,
    )


def train_refit(
    train_rows: pd.DataFrame,
    val_rows: pd.DataFrame,
    model: ModelConfig,
    recipe: TrainConfig,
    sweep: SweepConfig,
    plan: TrainingPlan,
    home: str,
    train: TableRef,
    val: TableRef,
    run: ChildRun,
) -> TrainResult:
    """The refit's training into its own directory, logging to its MLflow run."""
    from tunegate.callbacks import MlflowMetrics, TrainingProgress

    result = run_training(
        train_rows,
        val_rows,
        model,
        recipe,
        plan,
        stage_directory(
            home,
            "train/refit",
            __file__,
            train.fingerprint,
            val.fingerprint,
            fingerprint_value([model, recipe, plan, sweep.refit_with_val]),
        ),
        on_evaluate=lambda step, metrics: log_metrics(run.client, run.run_id, metrics, step),
        callbacks=[MlflowMetrics(run.client, run.run_id), TrainingProgress(plan.max_steps)],
    )
    log_metrics(run.client, run.run_id, run_summary_metrics(result), step=result.steps)
    return result
