"""The study's plots: drawn once per state of the study, logged to the pipeline run."""

from tasks.sweep import search_space
from tests.fixtures.sweep import PLAN
from tunegate.config.sweep import SweepConfig
from tunegate.sweep.study import open_study, storage_url


def test_an_unchanged_study_reuses_its_report_and_a_new_trial_redraws_it(tmp_path):
    from tunegate.runtime.tracking import TrackingRef, experiment_id, mlflow_client, start_child_run
    from tunegate.sweep.plots import log_study_plots
    from tunegate.sweep.results import StudyRef

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
