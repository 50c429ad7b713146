"""MLflow tracking: where runs go, parent/child runs, and a Trainer callback for the loss curves.

Runs are created with an explicit `MlflowClient` (not the thread-local fluent API), so trials running
in parallel threads each log into their own nested run. Metric and parameter names are the same in every
pipeline run (`lora_r`, `learning_rate`, `val_loss`, `train_loss`, the task metric) so MLflow's compare
view works across runs.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tunegate.config.pipeline import PipelineConfig
from tunegate.core.errors import one_line
from tunegate.core.secrets import redact

FLUENT_GUARD = threading.Lock()
OWNER_HOST_TAG, OWNER_PID_TAG, OWNER_BOOT_TAG = "tunegate.host", "tunegate.pid", "tunegate.boot_id"


def tracking_uri(config: PipelineConfig) -> str:
    """Config first, then $MLFLOW_TRACKING_URI, then an embedded SQLite store under the pipeline home."""
    return (
        config.registry.tracking_uri
        or os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{config.home_path() / 'mlflow.db'}"
    )


@contextmanager
def fluent_tracking(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (log_model, models:/ URIs) at `uri` for the block.

    `mlflow.set_tracking_uri` also exports $MLFLOW_TRACKING_URI for the whole process; left set, the next
    pipeline run in the same process (a test session, a long-lived runner) would log to this run's store
    instead of its own home's. The environment is put back on exit. The fluent URI is process-wide, so
    one thread at a time: keep the block short (one log or load)."""
    import mlflow

    with FLUENT_GUARD:
        saved = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def mlflow_client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(client: Any, name: str, home: Path) -> str:
    """The experiment's id. With a local store it is created with an absolute artifact location under home (never
    the CWD); a tracking server chooses its own (`mlflow-artifacts:/…`, proxied by `--serve-artifacts`), so clients
    on other machines upload through it instead of writing to a path only this one has."""
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    served = client.tracking_uri.startswith(("http://", "https://"))
    location = None if served else (home / "mlartifacts").as_uri()
    try:
        return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)
    except Exception:  # another run created it in between
        return client.get_experiment_by_name(name).experiment_id


# Marks the experiment as model training, not GenAI. MLflow 3.17's UI picks its view from the workflow type (the
# sidebar switch, or `?workflowType=machine_learning` in the URL, which the report's link carries), not from this tag
# yet (mlflow/mlflow#24498); the tag is what MLflow's own API offers and what a later UI reads.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# The context MLflow shows beside each dataset input, per split.
SPLIT_CONTEXTS = {"train": "training", "val": "validation", "test": "evaluation"}
# MLflow stores a dataset digest in at most 36 characters: the first 32 hex digits (128 bits) of our fingerprint.
DIGEST_CHARS = 32


def log_split_inputs(client: Any, run_id: str, splits: dict[str, Any]) -> None:
    """The splits (TableRefs by name) as the run's MLflow dataset inputs: the runs table's Datasets column and the
    run page show them with our fingerprint as digest and the Parquet file as source; nothing is copied."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    inputs = []
    for name, table in splits.items():
        with warnings.catch_warnings():
            # MLflow registers its local-file source twice and warns that a path "can be interpreted in multiple
            # ways: LocalArtifactDatasetSource, LocalArtifactDatasetSource": the same class either way.
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(str(table.path))
        dataset = MetaDataset(source, name=name, digest=table.fingerprint[:DIGEST_CHARS])
        context = InputTag("mlflow.data.context", SPLIT_CONTEXTS.get(name, name))
        inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags=[context]))
    client.log_inputs(run_id, datasets=inputs)


class TrackingRef(BaseModel):
    """Where one pipeline run logs: the MLflow store, its experiment, and the parent run its children nest under."""

    uri: str = Field(description="MLflow tracking URI (may hold a password: shown only through `redact`).")
    experiment_id: str
    parent_run_id: str

    def client(self) -> Any:
        return mlflow_client(self.uri)

    @contextmanager
    def child_run(self, name: str, tags: dict[str, str] | None = None) -> Iterator[ChildRun]:
        """A nested run that always ends: FINISHED, or the `end_status` the body set (KILLED for a pruned or
        unhealthy trial), or FAILED when the body raises (a retry or the next run starts its own run)."""
        client = self.client()
        run = ChildRun(client, start_child_run(client, self.experiment_id, self.parent_run_id, name, tags))
        try:
            yield run
        except BaseException:
            client.set_terminated(run.run_id, status="FAILED")
            raise
        client.set_terminated(run.run_id, status=run.end_status)


@dataclass
class ChildRun:
    """An open nested MLflow run; set `end_status` to end it otherwise than FINISHED."""

    client: Any
    run_id: str
    end_status: str = "FINISHED"


def start_child_run(
    client: Any, experiment: str, parent_run_id: str | None, run_name: str, tags: dict[str, str] | None = None
) -> str:
    run_tags = {"mlflow.runName": run_name, **owner_tags(), **(tags or {})}
    if parent_run_id:
        run_tags["mlflow.parentRunId"] = parent_run_id
    return client.create_run(experiment, run_name=run_name, tags=run_tags).info.run_id


def owner_tags() -> dict[str, str]:
    """Which process owns a run: a later run ends the runs of owners that died (kill -9, power loss)."""
    return {OWNER_HOST_TAG: socket.gethostname(), OWNER_PID_TAG: str(os.getpid()), OWNER_BOOT_TAG: boot_id()}


def boot_id() -> str:
    """This boot of the host (pids are reused after a reboot); empty where the kernel does not say."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def owner_is_dead(tags: dict[str, str]) -> bool:
    """True when the run's owner process ran on this host and is gone (another host's runs are left alone)."""
    if tags.get(OWNER_HOST_TAG) != socket.gethostname() or not tags.get(OWNER_PID_TAG, "").isdigit():
        return False
    if tags.get(OWNER_BOOT_TAG, "") != boot_id():
        return True
    try:
        os.kill(int(tags[OWNER_PID_TAG]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        return False
    return False


def end_orphaned_runs(client: Any, experiment: str) -> list[str]:
    """End as KILLED every RUNNING run of the experiment whose owner process died; returns their ids."""
    ended = []
    for run in client.search_runs([experiment], filter_string="attributes.status = 'RUNNING'", max_results=1000):
        if owner_is_dead(run.data.tags):
            client.set_tag(run.info.run_id, "ended_by", "a later run: its process had died")
            client.set_terminated(run.info.run_id, status="KILLED")
            ended.append(run.info.run_id)
    return ended


def open_pipeline_run(
    config: PipelineConfig, flow_run_id: str, flow_run_name: str, data_fingerprint: str
) -> TrackingRef:
    """The parent MLflow run of one pipeline run; trials and the final training nest under it.

    Its name reads `<pipeline> <date time> <flow run name>`; its tags link it to the Prefect flow run
    (id, name, UI address, deployment), so a row in MLflow's compare view leads back to the run's logs."""
    uri = tracking_uri(config)
    home = config.home_path()
    home.mkdir(parents=True, exist_ok=True)
    client = mlflow_client(uri)
    experiment = experiment_id(client, config.name, home)
    end_orphaned_runs(client, experiment)
    started = datetime.now().strftime("%Y-%m-%d %H:%M")
    run_id = start_child_run(
        client,
        experiment,
        None,
        f"{config.name} {started} {flow_run_name}",
        tags={
            "prefect.flow_run_id": flow_run_id,
            "prefect.flow_run_name": flow_run_name,
            **prefect_links(),
            "data_fingerprint": data_fingerprint,
        },
    )
    return TrackingRef(uri=uri, experiment_id=experiment, parent_run_id=run_id)


def prefect_links() -> dict[str, str]:
    """The flow run's UI address and deployment, when there are (a run from a deployment on a server)."""
    from prefect.runtime import deployment, flow_run
    from prefect.utilities.urls import url_for

    # url_for gives the UI's route (runs/flow-run/<id>), the one `prefect deployment run` prints.
    url = url_for("flow-run", obj_id=flow_run.id) if flow_run.id else None
    links = {"prefect.flow_run_url": url, "prefect.deployment": deployment.name}
    return {key: str(value) for key, value in links.items() if value}


def close_pipeline_run(
    tracking: TrackingRef,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    inputs: tuple[dict[str, Any], list[str]] = ({}, []),
    status: str = "FINISHED",
) -> None:
    """Log the run's chosen params and headline metrics (the names every run uses), tag it, log `inputs` (splits
    by name, and the other runs that trained on them: the candidate's) as dataset inputs, and end it."""
    from mlflow.entities import Metric, Param, RunTag

    client = tracking.client()
    splits, also_on = inputs
    for run_id in [tracking.parent_run_id, *also_on] if splits else []:
        log_split_inputs(client, run_id, splits)
    now = int(time.time() * 1000)
    client.log_batch(
        tracking.parent_run_id,
        metrics=[Metric(name, float(value), now, 0) for name, value in metrics.items()],
        params=[Param(name, redact(str(value))) for name, value in params.items()],
        tags=[RunTag(name, value) for name, value in tags.items()],
    )
    client.set_terminated(tracking.parent_run_id, status=status)


def fail_pipeline_run(config: PipelineConfig, flow_run_id: str) -> None:
    """Mark a failed or crashed flow run's parent MLflow run FAILED (found by its Prefect flow run id tag)."""
    client = mlflow_client(tracking_uri(config))
    experiment = client.get_experiment_by_name(config.name)
    if experiment is None:
        return
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`prefect.flow_run_id` = '{flow_run_id}' and attributes.status = 'RUNNING'",
    )
    for run in runs:
        for child in client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}' and attributes.status = 'RUNNING'",
        ):
            client.set_terminated(child.info.run_id, status="FAILED")
        client.set_terminated(run.info.run_id, status="FAILED")


def champion_tags(config: PipelineConfig) -> dict[str, str] | None:
    """Tags of the registered model's current champion version, or None when there is none yet."""
    from mlflow.exceptions import MlflowException

    client = mlflow_client(tracking_uri(config))
    try:
        version = client.get_model_version_by_alias(config.registered_model_name(), "champion")
    except MlflowException:
        return None
    return {**(version.tags or {}), "version": str(version.version)}


def unloadable_version(uri: str, model_name: str, version: str) -> str | None:
    """Why a registered version cannot be loaded (its model files gone from the artifact store, which happens when
    the store's folder is deleted while the registry database stays), else None; one listing of its artifacts.
    The version is looked up in the registry at `uri` (a `models:/` URI would resolve against the process's own
    registry, which in a worker is another store)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        location = mlflow_client(uri).get_model_version_download_uri(model_name, version)
        files = mlflow.artifacts.list_artifacts(artifact_uri=location, tracking_uri=uri)
    except (MlflowException, OSError) as exc:
        return f"{model_name} v{version} cannot be listed ({one_line(exc)[:160]})"
    if not any(Path(item.path).name == "MLmodel" for item in files or []):
        return f"{model_name} v{version} has no model files in the artifact store"
    return None


def log_metrics(client: Any, run_id: str, metrics: dict[str, float], step: int) -> None:
    """Log finite metrics (MLflow stores NaN, but the compare view cannot plot it)."""
    for name, value in metrics.items():
        if math.isfinite(value):
            client.log_metric(run_id, name, float(value), step=step)
