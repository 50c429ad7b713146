"""`tunegate serve-model`'s pieces: MLflow's scoring server on 127.0.0.1 from this environment, with this
environment's bin first on the child's PATH (a fresh terminal has no `.venv/bin` there: uvicorn was not found)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.conftest import REPO
from tunegate.registry.serve_command import model_location, serve_command, serving_environment

BIN = str(Path(sys.executable).parent)


def test_the_scoring_server_is_this_environments_mlflow_bound_to_localhost():
    assert serve_command("models:/support-demo@champion", 5001) == [
        f"{BIN}/mlflow",
        "models",
        "serve",
        "-m",
        "models:/support-demo@champion",
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        "5001",
    ]


def test_the_childs_path_starts_with_this_environments_bin_once(monkeypatch):
    monkeypatch.setenv("PATH", f"/usr/bin:{BIN}:/bin")
    environment = serving_environment("sqlite:///home/mlflow.db")
    assert (environment["PATH"], environment["MLFLOW_TRACKING_URI"]) == (
        f"{BIN}:/usr/bin:/bin",
        "sqlite:///home/mlflow.db",
    )


def test_the_model_comes_from_the_config_unless_both_name_and_store_are_given():
    given = argparse.Namespace(model="m", tracking_uri="sqlite:///x.db", config="no-such.yaml", overrides=[])
    assert model_location(given) == ("sqlite:///x.db", "m")
    from_config = argparse.Namespace(
        model=None, tracking_uri=None, config=str(REPO / "deployments" / "demo.yaml"), overrides=["home=/tmp/h"]
    )
    assert model_location(from_config) == ("sqlite:////tmp/h/mlflow.db", "support-demo")
