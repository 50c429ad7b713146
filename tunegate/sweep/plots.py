"""The study's plots, drawn by the flow after the sweep (so the trials' code key never covers them):
optimization history, parameter importances and the rank × learning-rate contour in one offline HTML report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunegate.config.search_space import ordered_params
from tunegate.core.fingerprint import combine, fingerprint_file, fingerprint_value
from tunegate.core.refs import write_text_atomic
from tunegate.runtime.stages import run_logger
from tunegate.runtime.tracking import TrackingRef
from tunegate.sweep.results import StudyRef
from tunegate.sweep.study import open_study
from tunegate.training.budget import TrainingPlan


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
    """The plots the study can draw, in one HTML file; Optuna's warnings about plots it cannot draw well ("Param
    learning_rate unique value length is less than 2" with two trials) stay off the terminal: the report simply
    lacks that plot."""
    import optuna
    from optuna import visualization

    searched = list(ordered_params(study.trials[0].params)) if study.trials else []
    plots = {
        "optimization_history": lambda: visualization.plot_optimization_history(study),
        "param_importances": lambda: visualization.plot_param_importances(study),
        f"contour_{'_'.join(searched)}": lambda: visualization.plot_contour(study, params=searched),
    }
    sections, drawn = [], []
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        for plot_name, make in plots.items():
            try:
                figure = make()
            except (ValueError, RuntimeError):  # e.g. importances need two finished trials with different params
                continue
            sections.append(f"<h2>{plot_name}</h2>" + figure.to_html(full_html=False, include_plotlyjs=not drawn))
            drawn.append(plot_name)
    finally:
        optuna.logging.set_verbosity(verbosity)
    report.write_text(f"<html><body><h1>Study {name}</h1>{''.join(sections)}</body></html>", encoding="utf-8")
    return drawn
