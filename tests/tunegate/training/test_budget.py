"""Budgets in optimizer steps from epochs, the rungs as fractions of them, and the plans a trial and the final
candidate train under."""

from __future__ import annotations

from tests.conftest import REPO
from tunegate.config.loading import load_config
from tunegate.config.train import TrainConfig
from tunegate.training.budget import (
    evaluation_steps,
    final_budget,
    final_budget_steps,
    final_plan,
    fixed_plan,
    rung_steps,
    trial_plan,
)

DEMO = REPO / "deployments" / "demo.yaml"


def test_the_budget_is_whole_epochs_of_whole_steps_capped_by_max_steps():
    assert final_budget_steps(epochs=2.0, max_steps=None, train_rows=2880, rows_per_step=16) == 360
    assert final_budget_steps(epochs=1.0, max_steps=None, train_rows=17, rows_per_step=16) == 2  # a partial step
    assert final_budget_steps(epochs=0.5, max_steps=None, train_rows=17, rows_per_step=16) == 1
    assert final_budget_steps(epochs=2.0, max_steps=100, train_rows=2880, rows_per_step=16) == 100
    assert final_budget_steps(epochs=2.0, max_steps=None, train_rows=0, rows_per_step=16) == 2  # never 0 steps


def test_rungs_sit_at_the_budget_over_powers_of_the_reduction_factor():
    assert rung_steps(360, rungs=2, reduction_factor=3) == [40, 120, 360]
    assert rung_steps(60, rungs=2, reduction_factor=3) == [7, 21, 60]  # the demo: ceil(60 / 9) = 7
    assert rung_steps(4, rungs=2, reduction_factor=3) == [1, 3, 4]
    assert rung_steps(2, rungs=3, reduction_factor=3) == [1, 2]  # rungs at or past the budget collapse into it
    assert rung_steps(50, rungs=0, reduction_factor=3) == [50]


def test_extra_evaluations_join_the_rungs_every_eval_steps():
    assert evaluation_steps([7, 21, 60], 60, None) == [7, 21, 60]
    assert evaluation_steps([7, 21, 60], 60, 20) == [7, 20, 21, 40, 60]


def test_the_global_batch_counts_accumulation_and_processes():
    train = TrainConfig(batch_size=8, gradient_accumulation_steps=2, epochs=1.0)
    assert final_budget(train, 2880) == 180
    assert final_budget(train, 2880, processes=2) == 90


def test_a_trial_and_the_best_trial_candidate_train_the_same_plan():
    config = load_config(DEMO)  # max_steps 60, rungs 2, objective auto on a labelled task
    trial = trial_plan(config, train_rows=2880)
    assert (trial.max_steps, trial.evaluation_steps, trial.first_rung) == (60, [7, 21, 60], 7)
    assert (trial.objective, trial.metric, trial.objective_rows) == ("task_metric", "accuracy", 100)
    assert trial.greater_is_better and trial.keep_best_checkpoint
    assert final_plan(config, train_rows=2880, val_rows=360) == trial


def test_a_refit_on_train_and_val_trains_more_steps_and_keeps_its_last_checkpoint():
    config = load_config(
        DEMO, ["train.max_steps=null", "train.epochs=1", "sweep.final=refit", "sweep.refit_with_val=true"]
    )
    refit = final_plan(config, train_rows=2880, val_rows=360)
    assert refit.max_steps == 405 and not refit.keep_best_checkpoint  # (2880 + 360) / 8
    assert trial_plan(config, train_rows=2880).max_steps == 360
    train_only = load_config(DEMO, ["train.max_steps=null", "train.epochs=1", "sweep.final=refit"])
    assert final_plan(train_only, train_rows=2880, val_rows=360).max_steps == 360  # val stays held out
    proxy = load_config(DEMO, ["sweep.final=refit", "sweep.trial_max_steps=30"])
    assert trial_plan(proxy, train_rows=2880).max_steps == 30


def test_a_fixed_plan_always_evaluates_its_last_step():
    plan = fixed_plan(8, [4])
    assert (plan.evaluation_steps, plan.first_rung, plan.metric, plan.labels) == ([4, 8], 4, "val_loss", None)
    labelled = fixed_plan(8, labels=["a", "b"], objective="task_metric")
    assert (labelled.evaluation_steps, labelled.metric) == ([8], "accuracy")
