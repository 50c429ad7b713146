"""The study: its name, its direction, seeded and continued from its journal."""

import optuna

from tasks.sweep import search_space
from tests.fixtures.sweep import ACCURACY_PLAN, PLAN, tell_complete
from tunegate.config.sweep import SweepConfig
from tunegate.config.train import ModelConfig, TrainConfig
from tunegate.sweep.study import open_study, storage_url, study_direction, study_name
from tunegate.sweep.trials import best_complete_trial


def name(sweep=None, train=None, data="fp1", plan=PLAN, code="c1") -> str:
    return study_name("demo", data, ModelConfig(), train or TrainConfig(), sweep or SweepConfig(), plan, code)


def test_study_name_follows_data_search_plan_and_trial_code_not_trial_count_runner_or_time():
    base = name()
    assert base.startswith("demo-") and len(base) == len("demo-") + 12
    assert name(SweepConfig(n_trials=50, parallel_trials=4, timeout_minutes=5)) == base
    assert name(train=TrainConfig(lora_r=32, learning_rate=1.0)) == base
    assert name(data="fp2") != base
    assert name(SweepConfig(lora_ranks=[8])) != base
    # The sampler and pruner settings decide which trials run and which stop: another study.
    assert name(SweepConfig(startup_trials=4)) != base
    assert name(SweepConfig(reduction_factor=2)) != base
    # Another budget or objective judges trials differently.
    assert name(train=TrainConfig(epochs=3)) != base
    assert name(plan=ACCURACY_PLAN) != base
    # Changed trial code trains differently: its trials are not the old code's.
    assert name(code="c2") != base


def test_accuracy_is_maximised_and_val_loss_minimised(tmp_path):
    storage = storage_url(SweepConfig(), tmp_path)
    assert (study_direction(ACCURACY_PLAN), study_direction(PLAN)) == ("maximize", "minimize")
    accuracy = open_study("acc", storage, SweepConfig(), ACCURACY_PLAN)
    loss = open_study("loss", storage, SweepConfig(), PLAN)
    assert accuracy.direction == optuna.study.StudyDirection.MAXIMIZE
    assert loss.direction == optuna.study.StudyDirection.MINIMIZE
    for study, values in ((accuracy, [0.5, 0.9, 0.7]), (loss, [2.0, 1.0, 3.0])):
        for value in values:
            tell_complete(study, SweepConfig(), value, val_loss=1.0)
    assert best_complete_trial(accuracy.trials, maximize=True).value == 0.9
    assert best_complete_trial(loss.trials, maximize=False).value == 1.0


def test_study_is_seeded_and_continued_from_its_journal(tmp_path):
    sweep = SweepConfig(seed=7)
    storage = storage_url(sweep, tmp_path)
    assert storage == f"journal:{tmp_path / 'optuna' / 'journal.log'}"
    first = open_study("s", storage, sweep, PLAN)
    asked = [first.ask(search_space(sweep)).params for _ in range(3)]
    again = open_study("s", storage, sweep, PLAN)
    assert len(again.trials) == 3
    assert [t.params for t in again.trials] == asked
    assert {p["lora_r"] for p in asked} <= {4, 8, 16, 32}
    assert all(1e-4 <= p["learning_rate"] <= 1e-2 for p in asked)
    assert type(first.pruner).__name__ == "SuccessiveHalvingPruner"
