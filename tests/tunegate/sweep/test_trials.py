"""Trial bookkeeping: which trial is best, and the best trials that seed a successor study."""

import optuna

from tasks.sweep import search_space
from tests.fixtures.sweep import ACCURACY_PLAN, tell_complete
from tunegate.config.sweep import SweepConfig
from tunegate.sweep.study import open_study, storage_url
from tunegate.sweep.trials import best_complete_trial, best_trials_of


def test_accuracy_ties_go_to_the_lower_val_loss_then_the_earlier_trial(tmp_path):
    study = open_study("ties", storage_url(SweepConfig(), tmp_path), SweepConfig(), ACCURACY_PLAN)
    for value, val_loss in [(0.9, 1.5), (0.9, 1.2), (0.8, 0.1), (0.9, 1.2)]:
        tell_complete(study, SweepConfig(), value, val_loss)
    assert best_complete_trial(study.trials, maximize=True).number == 1


def test_pruned_trials_are_never_chosen(tmp_path):
    study = open_study("pruned", storage_url(SweepConfig(), tmp_path), SweepConfig(), ACCURACY_PLAN)
    trial = study.ask(search_space(SweepConfig()))
    trial.report(0.99, 10)
    study.tell(trial.number, state=optuna.trial.TrialState.PRUNED)
    assert best_complete_trial(study.trials, maximize=True) is None
    tell_complete(study, SweepConfig(), 0.5, 1.0)
    assert best_complete_trial(study.trials, maximize=True).number == 1


def test_best_trials_of_a_finished_study_seed_its_successor(tmp_path):
    sweep = SweepConfig(seed=3)
    storage = storage_url(sweep, tmp_path)
    study = open_study("previous", storage, sweep, ACCURACY_PLAN)
    for rank, accuracy in [(4, 0.7), (8, 0.9), (16, 0.5)]:
        tell_complete(study, sweep, accuracy, 1.0, {"lora_r": rank, "learning_rate": 1e-3})
    assert best_trials_of("previous", storage, count=2) == [
        {"lora_r": 8, "learning_rate": 1e-3},
        {"lora_r": 4, "learning_rate": 1e-3},
    ]
    assert best_trials_of("no-such-study", storage, count=2) == []
