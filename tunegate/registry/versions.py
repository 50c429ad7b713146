"""Model versions in the MLflow registry: logging one (the adapter, tokenizer and prompt format as artifacts,
this package as code, the serving requirements), its per-row test scores and tags, the exports' versions, a
version a killed run left without an alias, the lock that serialises registrations of one model name, and the
lineage tags that tie a version to its data, study and flow run."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tunegate.config.pipeline import PipelineConfig, pipeline_fingerprint
from tunegate.config.train import ModelConfig
from tunegate.core.refs import AdapterRef, TableRef
from tunegate.data.prepared import PreparedData
from tunegate.registry.promotion import REASON_TAG
from tunegate.registry.results import ExportedBuild
from tunegate.registry.serving import (
    ADAPTER_ARTIFACT,
    PACKAGE_DIR,
    AdapterGenerator,
    base_model_reference,
)
from tunegate.runtime.tracking import TrackingRef, fluent_tracking
from tunegate.sweep.results import SweepResult

# A waiting run gives up after 30 minutes: the guarded section is seconds, or one champion re-evaluation.
REGISTRY_LOCK_TIMEOUT = 1800.0


# What the registered model imports when it is served; our own code travels with it (`code_paths`), so the project
# is not a requirement (no package index has it) and a fresh environment can serve the model.
SERVING_PACKAGES = ("mlflow", "torch", "transformers", "peft", "pandas")


ROW_SCORES_DIR = "eval"  # the version's per-row test scores: <run artifacts>/eval/row_scores-v<version>.json


def export_tags(build: ExportedBuild, weights: AdapterRef, metric: str, adapter_version: str) -> dict[str, str]:
    """What an export's version is: which build of which adapter version, and how it measured."""
    return {
        "export": build.name,
        "export_of_version": adapter_version,
        "weights_fingerprint": weights.fingerprint,
        "quantization": build.quantization or "none",
        f"eval.{metric}": f"{build.task_metric:.6f}",
        "metric_drop": f"{build.metric_drop:.6f}",
        "latency_p50_ms": f"{build.p50_ms:.2f}",
        "latency_p95_ms": f"{build.p95_ms:.2f}",
        "size_mb": f"{build.size_mb:.2f}",
    }


def export_version(client: Any, model_name: str, tags: dict[str, str]) -> str | None:
    """The version already registered for this build of this adapter version, if any."""
    identity = ("export", "export_of_version", "weights_fingerprint", "quantization")
    for version in client.search_model_versions(f"name = '{model_name}'"):
        if all((version.tags or {}).get(key) == tags[key] for key in identity):
            return str(version.version)
    return None


def log_row_scores(client: Any, run_id: str, version: str, rows: TableRef, scores: Any) -> str:
    """Log the version's per-row test scores as a run artifact; returns its artifact path (tagged on the version)."""
    name = f"row_scores-v{version}.json"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_text(json.dumps({"test_fingerprint": rows.fingerprint, "scores": list(map(float, scores))}))
        client.log_artifact(run_id, str(path), artifact_path=ROW_SCORES_DIR)
    return f"{ROW_SCORES_DIR}/{name}"


def log_model_version(
    adapter_dir: str,
    model: ModelConfig,
    model_name: str,
    tracking: TrackingRef,
    identity: dict[str, str],
    build: ExportedBuild | None = None,
) -> str:
    """Log the pyfunc (adapter + tokenizer + prompt format, base by reference; or an export's whole weights) into
    the pipeline's run and register it, tagged with what it is from the start; returns the new version number."""
    import mlflow

    quantization = {"quantization": build.quantization} if build and build.quantization else {}
    with fluent_tracking(tracking.uri):
        with mlflow.start_run(run_id=tracking.parent_run_id):
            info = mlflow.pyfunc.log_model(
                name=f"model-{build.name}" if build else "model",
                python_model=AdapterGenerator(),
                artifacts={ADAPTER_ARTIFACT: adapter_dir},
                model_config={
                    "base_model": base_model_reference(model.base),
                    "trust_remote_code": model.trust_remote_code,
                    **quantization,
                },
                pip_requirements=serving_requirements(),
                code_paths=[str(PACKAGE_DIR)],  # the `tunegate` package the pyfunc imports
            )
        registered = mlflow.register_model(info.model_uri, model_name, tags=identity)
    # Leaving `start_run` ended the pipeline's run as FINISHED; it is still going (the flow closes it), and a
    # run killed from here on must read as RUNNING so that the next run can tell it died.
    tracking.client().update_run(tracking.parent_run_id, status="RUNNING")
    return str(registered.version)


def serving_requirements() -> list[str]:
    """The served model's pip requirements, pinned to the versions it was trained and evaluated with."""
    from importlib import metadata

    return [f"{name}=={metadata.version(name)}" for name in SERVING_PACKAGES]


def close_stranded_versions(client: Any, model_name: str, keep: str) -> list[str]:
    """Give a reason to every other version whose registering run died before deciding (its MLflow run ended
    KILLED or FAILED): no version is left without one. Returns their numbers."""
    closed = []
    for version in client.search_model_versions(f"name = '{model_name}'"):
        if str(version.version) == keep or REASON_TAG in (version.tags or {}) or not version.run_id:
            continue
        status = client.get_run(version.run_id).info.status
        if status in ("KILLED", "FAILED"):
            reason = f"not promoted: the run that registered it ended {status} before the decision"
            client.set_model_version_tag(model_name, str(version.version), REASON_TAG, reason)
            closed.append(str(version.version))
    return closed


def interrupted_version(client: Any, model_name: str, identity: dict[str, str]) -> str | None:
    """The version of this adapter on these test rows whose registration never finished (no reason tag)."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{model_name}'")
    except MlflowException:
        return None
    for version in sorted(versions, key=lambda v: int(v.version)):
        tags = version.tags or {}
        if REASON_TAG not in tags and all(tags.get(key) == value for key, value in identity.items()):
            return str(version.version)
    return None


@contextmanager
def registry_lock(model_name: str, timeout_seconds: float = REGISTRY_LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the model's registry lock: a Prefect global concurrency limit of 1, created on first use.

    It lives on the Prefect server, so it also serializes runs on different workers sharing one MLflow
    registry, and shows in the UI under Concurrency."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectNotFound

    name = registry_lock_name(model_name)
    with get_client(sync_client=True) as prefect:
        try:
            prefect.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                prefect.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
            except Exception:  # created by another run in between (a 409, or a 500 for the unique name)
                prefect.read_global_concurrency_limit_by_name(name)  # raises if it really is missing
    with concurrency(name, occupy=1, strict=True, timeout_seconds=timeout_seconds):
        yield


def registry_lock_name(model_name: str) -> str:
    return "tunegate-registry-" + re.sub(r"[^A-Za-z0-9_-]", "-", model_name)


def lineage_tags(data: PreparedData, sweep: SweepResult, config: PipelineConfig, flow_run_id: str) -> dict[str, str]:
    """What a version was made from: its data (splits and raw sources), its config, its validation, its study and
    chosen params, and the Prefect flow run (retraining compares the source and config fingerprints)."""
    return {
        "data_fingerprint": data.data_fingerprint,
        "source_fingerprint": data.source_fingerprint,
        "config_fingerprint": pipeline_fingerprint(config),
        "gx_validation_success": str(data.validated.success).lower(),
        "optuna_study": sweep.study_name,
        "best_params": json.dumps(sweep.best_params, sort_keys=True),
        "prefect_flow_run_id": flow_run_id,
    }
