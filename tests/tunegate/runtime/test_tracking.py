import os

from tunegate.runtime.tracking import fluent_tracking


def test_fluent_tracking_puts_the_process_environment_back(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "sqlite:///elsewhere.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with fluent_tracking(uri):
        assert os.environ["MLFLOW_TRACKING_URI"] == uri
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert os.environ["MLFLOW_REGISTRY_URI"] == "sqlite:///elsewhere.db"


def test_a_child_run_always_ends_finished_killed_or_failed(tmp_path):
    import pytest

    from tunegate.runtime.tracking import TrackingRef, experiment_id, mlflow_client, start_child_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow_client(uri)
    experiment = experiment_id(client, "children", tmp_path)
    tracking = TrackingRef(
        uri=uri, experiment_id=experiment, parent_run_id=start_child_run(client, experiment, None, "parent")
    )
    with tracking.child_run("done") as done:
        pass
    with tracking.child_run("pruned") as pruned:
        pruned.end_status = "KILLED"
    with pytest.raises(RuntimeError, match="training blew up"), tracking.child_run("broken") as broken:
        raise RuntimeError("training blew up")
    statuses = [client.get_run(run.run_id).info.status for run in (done, pruned, broken)]
    parents = {client.get_run(run.run_id).data.tags["mlflow.parentRunId"] for run in (done, pruned, broken)}
    assert (statuses, parents) == (["FINISHED", "KILLED", "FAILED"], {tracking.parent_run_id})
