import json

import optuna
import pytest

import tasks.sweep as sweep_module
from tasks.sweep import (
    RESULT_ATTR,
    best_complete_trial,
    best_trials_of,
    open_study,
    search_space,
    storage_url,
    study_direction,
    study_for,
    study_name,
)
from tunegate.budget import fixed_plan
from tunegate.code_version import code_fingerprint
from tunegate.config import ModelConfig, PipelineConfig, SweepConfig, TrainConfig

PLAN = fixed_plan(90, [10, 30, 90])
ACCURACY_PLAN = fixed_plan(90, [10, 30, 90], labels=["a", "b"], objective="task_metric")


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


def test_the_pipelines_study_is_named_by_the_sweep_modules_code(tmp_path):
    config = PipelineConfig(name="demo", home=str(tmp_path), data={"sources": [{"path": "x.jsonl"}]})
    code = code_fingerprint(sweep_module.__file__)
    expected = study_name("demo", "fp1", config.model, config.train, config.sweep, PLAN, code)
    assert study_for(config, "fp1", PLAN).name == expected


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


def tell_complete(study, sweep, value: float, val_loss: float, params=None) -> None:
    if params:
        study.enqueue_trial(params)
    trial = study.ask(search_space(sweep))
    trial.set_user_attr(RESULT_ATTR, json.dumps({"train": {"best_val_loss": val_loss}}))
    study.tell(trial.number, value)


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


def test_proxy_trials_must_be_refit():
    from tunegate.config import validate_config
    from tunegate.errors import InputError

    document = {"data": {"sources": [{"path": "x.csv"}]}, "sweep": {"trial_max_steps": 30}}
    with pytest.raises(InputError, match="sweep.trial_max_steps \\(proxy trials\\) needs sweep.final: refit"):
        validate_config(document, "cfg.yaml")
    document["sweep"]["final"] = "refit"
    assert validate_config(document, "cfg.yaml").sweep.trial_max_steps == 30


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


def test_a_trial_is_keyed_on_its_study_but_not_on_its_number_or_run():
    from types import SimpleNamespace

    from tasks.sweep import run_trial

    def key(trial_number: int, study_key: str, parent_run: str) -> str:
        inputs = {
            "params": {"lora_r": 8, "learning_rate": 1e-3},
            "trial_number": trial_number,
            "study": {"name": study_key},
            "tracking": {"parent_run_id": parent_run},
            "study_key": study_key,
        }
        return run_trial.cache_policy.compute_key(SimpleNamespace(task=run_trial), inputs, {})

    assert key(0, "demo-pruned", "run-a") == key(5, "demo-pruned", "run-b")
    assert key(0, "demo-pruned", "run-a") != key(0, "demo-unpruned", "run-a")


def test_an_unchanged_study_reuses_its_report_and_a_new_trial_redraws_it(tmp_path):
    from tasks.sweep import log_study_plots
    from tunegate.stage_results import StudyRef
    from tunegate.tracking import TrackingRef, experiment_id, mlflow_client, start_child_run

    sweep = SweepConfig(seed=3)
    storage = storage_url(sweep, tmp_path)
    study = open_study("plotted", storage, sweep, PLAN)

    def add_trial(rank: int, loss: float) -> None:
        study.enqueue_trial({"lora_r": rank, "learning_rate": 1e-3})
        study.tell(study.ask(search_space(sweep)).number, loss)

    for rank, loss in [(4, 2.0), (8, 1.0)]:
        add_trial(rank, loss)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow_client(uri)
    experiment = experiment_id(client, "plots", tmp_path)
    runs = [start_child_run(client, experiment, None, f"run-{i}") for i in range(3)]
    out = tmp_path / "report"

    def plot(run_id: str) -> tuple[list[str], str]:
        tracking = TrackingRef(uri=uri, experiment_id=experiment, parent_run_id=run_id)
        drawn = log_study_plots(StudyRef(name="plotted", storage=storage, sweep=sweep), PLAN, tracking, out)
        assert [a.path for a in client.list_artifacts(run_id, "sweep")] == ["sweep/sweep_report.html"]
        return drawn, (out / "sweep_report.html").read_text()

    first_drawn, first_html = plot(runs[0])
    (out / "sweep_report.html").write_text(first_html + "<!-- reused -->")  # a redraw would overwrite this mark
    assert plot(runs[1]) == (first_drawn, first_html + "<!-- reused -->")
    add_trial(16, 0.5)
    drawn, html = plot(runs[2])
    assert drawn == ["optimization_history", "param_importances", "contour_lora_r_learning_rate"]
    assert "<!-- reused -->" not in html and html.count("<h2>") == 3
