from tasks.sweep import best_trials_of, open_study, search_space, storage_url, study_name
from tunegate.config import ModelConfig, SweepConfig, TrainConfig


def test_study_name_follows_data_and_search_not_trial_count_or_runner():
    base = study_name("demo", "fp1", ModelConfig(), TrainConfig(), SweepConfig())
    assert base.startswith("demo-") and len(base) == len("demo-") + 12
    assert study_name("demo", "fp1", ModelConfig(), TrainConfig(), SweepConfig(n_trials=50, parallel_trials=4)) == base
    assert study_name("demo", "fp1", ModelConfig(), TrainConfig(lora_r=32, learning_rate=1.0), SweepConfig()) == base
    assert study_name("demo", "fp2", ModelConfig(), TrainConfig(), SweepConfig()) != base
    assert study_name("demo", "fp1", ModelConfig(), TrainConfig(), SweepConfig(lora_ranks=[8])) != base
    # The sampler and pruner settings decide which trials run and which stop: another study.
    assert study_name("demo", "fp1", ModelConfig(), TrainConfig(), SweepConfig(startup_trials=4)) != base
    assert study_name("demo", "fp1", ModelConfig(), TrainConfig(), SweepConfig(reduction_factor=2)) != base


def test_study_is_seeded_and_continued_from_its_journal(tmp_path):
    sweep = SweepConfig(seed=7)
    storage = storage_url(sweep, tmp_path)
    assert storage == f"journal:{tmp_path / 'optuna' / 'journal.log'}"
    first = open_study("s", storage, sweep)
    asked = [first.ask(search_space(sweep)).params for _ in range(3)]
    again = open_study("s", storage, sweep)
    assert len(again.trials) == 3
    assert [t.params for t in again.trials] == asked
    assert {p["lora_r"] for p in asked} <= {4, 8, 16, 32}
    assert all(1e-4 <= p["learning_rate"] <= 1e-2 for p in asked)
    assert type(first.pruner).__name__ == "SuccessiveHalvingPruner"


def test_best_trials_of_a_finished_study_seed_its_successor(tmp_path):
    sweep = SweepConfig(seed=3)
    storage = storage_url(sweep, tmp_path)
    study = open_study("previous", storage, sweep)
    for rank, loss in [(4, 2.0), (8, 1.0), (16, 3.0)]:
        study.enqueue_trial({"lora_r": rank, "learning_rate": 1e-3})
        study.tell(study.ask(search_space(sweep)).number, loss)
    assert best_trials_of("previous", storage, sweep, count=2) == [
        {"lora_r": 8, "learning_rate": 1e-3},
        {"lora_r": 4, "learning_rate": 1e-3},
    ]
    assert best_trials_of("no-such-study", storage, sweep, count=2) == []


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
    from tunegate.tracking import experiment_id, mlflow_client, start_child_run

    sweep = SweepConfig(seed=3)
    storage = storage_url(sweep, tmp_path)
    study = open_study("plotted", storage, sweep)

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
        drawn = log_study_plots("plotted", storage, sweep, {"uri": uri, "parent_run_id": run_id}, out)
        assert [a.path for a in client.list_artifacts(run_id, "sweep")] == ["sweep/sweep_report.html"]
        return drawn, (out / "sweep_report.html").read_text()

    first_drawn, first_html = plot(runs[0])
    (out / "sweep_report.html").write_text(first_html + "<!-- reused -->")  # a redraw would overwrite this mark
    assert plot(runs[1]) == (first_drawn, first_html + "<!-- reused -->")
    add_trial(16, 0.5)
    drawn, html = plot(runs[2])
    assert drawn == ["optimization_history", "param_importances", "contour_lora_r_learning_rate"]
    assert "<!-- reused -->" not in html and html.count("<h2>") == 3
