import os

from tunegate.tracking import fluent_tracking


def test_fluent_tracking_puts_the_process_environment_back(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "sqlite:///elsewhere.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with fluent_tracking(uri):
        assert os.environ["MLFLOW_TRACKING_URI"] == uri
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert os.environ["MLFLOW_REGISTRY_URI"] == "sqlite:///elsewhere.db"
