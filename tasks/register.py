"""Register: log the trained model to MLflow as a pyfunc model version and move an alias, gated.

The version carries the adapter, tokenizer and prompt format, a reference to the base model, and tags
linking it to its data fingerprint, validation result, Optuna study, best params and Prefect flow run.
`champion` moves to it only when the lower bound of the paired bootstrap 95% interval of its task-metric gain
over the base reaches `registry.min_gain_over_base`, AND, when there is a champion, the lower bound of the
interval of (candidate - champion) on the same test rows is above `registry.min_gain_over_champion` (the
champion's per-row scores are reused when they were measured on the same test-set fingerprint, else it is
evaluated now). An empty or NaN evaluation, or a candidate from an unhealthy training run, is never promoted;
otherwise a refused candidate becomes `challenger`, and the reason quotes the interval.

Exports (merged, int8) that measured within `export.max_metric_drop` of the adapter are registered after it as
versions of their own (`register_exports`), aliased `<alias>-<export>` (e.g. `champion-int8`).
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task

from tunegate.caching import stage_cache_policy
from tunegate.config import ModelConfig, PipelineConfig, RegistryConfig, pipeline_fingerprint
from tunegate.health import HealthReport
from tunegate.preference import PREFERENCE_METRIC, pair_scores, reference_logprobs
from tunegate.prepared import PreparedData
from tunegate.refs import AdapterRef, TableRef
from tunegate.scoring import paired_bootstrap_ci, scores_for_metric
from tunegate.serving import (
    ADAPTER_ARTIFACT,
    GENERATION_DEFAULTS,
    PACKAGE_DIR,
    AdapterGenerator,
    base_model_reference,
    registered_build,
    registered_model_answers,
)
from tunegate.stage_results import (
    EvalResult,
    EvaluationOutput,
    ExportedBuild,
    ExportResult,
    RegistryResult,
    SweepResult,
    TrainedModel,
)
from tunegate.tracking import TrackingRef, fluent_tracking

CHAMPION, CHALLENGER = "champion", "challenger"
REASON_TAG = "promotion_reason"
# A waiting run gives up after 30 minutes: the guarded section is seconds, or one champion re-evaluation.
REGISTRY_LOCK_TIMEOUT = 1800.0
# What the registered model imports when it is served; our own code travels with it (`code_paths`), so the project
# is not a requirement (no package index has it) and a fresh environment can serve the model.
SERVING_PACKAGES = ("mlflow", "torch", "transformers", "peft", "pandas")
ROW_SCORES_DIR = "eval"  # the version's per-row test scores: <run artifacts>/eval/row_scores-v<version>.json


# Lineage tags describe a version (its flow run id differs on every run) but do not decide it: the adapter's
# fingerprint and its evaluation do. Leaving them out of the key keeps a rerun from registering a copy.
@task(cache_policy=stage_cache_policy(excluded=("tracking", "lineage")))
def register_model(
    candidate: TrainedModel,
    evaluated: EvaluationOutput,
    model: ModelConfig,
    registry: RegistryConfig,
    lineage: dict[str, str],
    tracking: TrackingRef,
) -> RegistryResult:
    """Log and register the candidate as a version of `registry.model_name`, then set `champion` or
    `challenger` with the reason.

    Reading the champion, deciding and moving the alias happen under one registry-wide lock (a Prefect
    global concurrency limit of 1 per model), so two runs finishing at once cannot both read "no
    champion" and leave the alias on whichever wrote last."""
    if registry.model_name is None:
        raise ValueError("registry.model_name is unresolved: pass PipelineConfig.registry_settings()")
    client, model_name = tracking.client(), registry.model_name
    evaluation, eval_rows, health = evaluated.result, evaluated.rows, candidate.result.health
    identity = {"adapter_fingerprint": candidate.adapter.fingerprint, "test_fingerprint": eval_rows.fingerprint}
    # A run killed between registering and deciding left this model's version without an alias or a reason:
    # the rerun finishes that version instead of adding a second one.
    version = interrupted_version(client, model_name, identity) or log_model_version(
        candidate.adapter.path, model, model_name, tracking, identity
    )
    close_stranded_versions(client, model_name, keep=version)
    scores = evaluated.scores.read()
    version_tags = {
        **lineage,
        **identity,
        "task_metric": evaluation.task_metric,
        f"eval.{evaluation.task_metric}": f"{evaluation.finetuned[evaluation.task_metric]:.6f}",
        f"eval.base.{evaluation.task_metric}": f"{evaluation.base[evaluation.task_metric]:.6f}",
        "eval.row_scores": log_row_scores(client, tracking.parent_run_id, version, eval_rows, scores["finetuned"]),
        "healthy": str(health.healthy).lower(),
    }
    for key, value in version_tags.items():
        client.set_model_version_tag(model_name, version, key, value)
    with registry_lock(model_name):
        champion = current_champion(client, model_name)
        champion = champion if champion is None or str(champion.version) != version else None
        champion_scores = (
            champion_scores_on(client, champion, evaluated, model_name, tracking.uri, model.trust_remote_code)
            if champion
            else None
        )
        promoted, reason = promotion_decision(
            evaluation,
            scores["base"].to_numpy(),
            scores["finetuned"].to_numpy(),
            registry,
            health,
            Champion(version=str(champion.version), scores=champion_scores) if champion else None,
        )
        alias = CHAMPION if promoted else CHALLENGER
        client.set_registered_model_alias(model_name, alias, version)
        # Written last: a version without a reason is one whose registration did not finish.
        client.set_model_version_tag(model_name, version, REASON_TAG, reason)
    return RegistryResult(
        model_name=model_name,
        version=version,
        aliases=[alias],
        promoted=promoted,
        reason=reason,
        model_uri=f"models:/{model_name}@{alias}",
    )


@task(cache_policy=stage_cache_policy(excluded=("tracking",)))
def register_exports(builds: ExportResult, registered: RegistryResult, tracking: TrackingRef) -> ExportResult:
    """Register each export within export.max_metric_drop as a version of its own, tagged with the adapter's
    version and its measurements, under the adapter version's alias + '-' + its name (`champion-int8`); the
    others stay unregistered with their reason. A rerun finds a version it registered before instead of adding
    another."""
    client, model_name = tracking.client(), registered.model_name
    model = ModelConfig(base=builds.base_model, trust_remote_code=builds.trust_remote_code)
    measured = []
    for build in builds.builds:
        if not build.registrable or build.weights is None:
            measured.append(build)
            continue
        tags = export_tags(build, build.weights, builds.task_metric, registered.version)
        version = export_version(client, model_name, tags) or log_model_version(
            build.weights.path, model, model_name, tracking, tags, build
        )
        alias = f"{registered.aliases[0]}-{build.name}"
        client.set_registered_model_alias(model_name, alias, version)
        reason = f"registered as v{version} ({alias}): {build.reason}"
        client.set_model_version_tag(model_name, version, REASON_TAG, reason)
        measured.append(build.model_copy(update={"version": version, "alias": alias, "reason": reason}))
    return builds.model_copy(update={"builds": measured})


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


def current_champion(client: Any, model_name: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None


def champion_scores_on(
    client: Any,
    champion: Any,
    evaluated: EvaluationOutput,
    model_name: str,
    uri: str,
    trust_remote_code: bool = False,
) -> np.ndarray:
    """The champion's per-row task metric on the candidate's test rows: its logged scores if measured on the same
    rows, else measured now from its weights (never its pickled pyfunc): its generations scored, or (DPO) its
    preference on each pair against the candidate's reference."""
    eval_rows = evaluated.rows
    logged = logged_row_scores(client, champion)
    if logged is not None and logged["test_fingerprint"] == eval_rows.fingerprint:
        return np.array(logged["scores"], dtype=float)

    rows, reference = eval_rows.read(), reference_logprobs(evaluated)
    champion_uri = f"models:/{model_name}/{champion.version}"
    if reference is None:
        return scores_for_metric(
            evaluated.result.task_metric, rows, registered_model_answers(champion_uri, rows, trust_remote_code, uri)
        )
    with registered_build(champion_uri, trust_remote_code, uri) as build:
        return pair_scores(
            build.model, build.tokenizer, build.prompt_format, rows, reference, GENERATION_DEFAULTS["batch_size"]
        )


def logged_row_scores(client: Any, version: Any) -> dict[str, Any] | None:
    artifact = (version.tags or {}).get("eval.row_scores")
    if not artifact or not version.run_id:
        return None
    with tempfile.TemporaryDirectory() as folder:
        local = client.download_artifacts(version.run_id, artifact, folder)
        return json.loads(Path(local).read_text())


@dataclass(frozen=True)
class Champion:
    """The current champion version and its per-row scores on the candidate's test rows."""

    version: str
    scores: np.ndarray


def promotion_decision(
    evaluation: EvalResult,
    base_scores: np.ndarray,
    tuned_scores: np.ndarray,
    registry: RegistryConfig,
    health: HealthReport,
    champion: Champion | None,
    seed: int = 0,
) -> tuple[bool, str]:
    """(promote?, one-line reason quoting the intervals). Never promotes NaN, no rows, or an unhealthy run."""
    metric = evaluation.task_metric
    tuned, base = evaluation.finetuned[metric], evaluation.base[metric]
    if not len(tuned_scores) or math.isnan(tuned) or math.isnan(base):
        return False, f"not promoted: no evaluation ({metric} {tuned} vs base {base} on {len(tuned_scores)} rows)"
    if not health.healthy:
        return False, f"not promoted: training was unhealthy ({'; '.join(health.issues)})"
    low, high = paired_bootstrap_ci(base_scores, tuned_scores, seed)
    gain = (
        f"{metric} {tuned:.3f} vs base {base:.3f} (gain {tuned - base:+.3f}, 95% CI {low:+.3f} .. {high:+.3f}, "
        f"lower bound needed {registry.min_gain_over_base:+.3f})"
    )
    if low < registry.min_gain_over_base:
        return False, f"not promoted: {gain}"
    degraded = degraded_generations(evaluation, registry.max_generation_drop)
    if degraded:
        return False, f"not promoted: {gain}, but {degraded}"
    if champion is None:
        return True, f"promoted: {gain}; no champion yet"
    c_low, c_high = paired_bootstrap_ci(champion.scores, tuned_scores, seed)
    against = (
        f"champion v{champion.version} {float(np.mean(champion.scores)):.3f} on these rows "
        f"(95% CI of the difference {c_low:+.3f} .. {c_high:+.3f}, lower bound must exceed "
        f"{registry.min_gain_over_champion:+.3f})"
    )
    if not c_low > registry.min_gain_over_champion:
        return False, f"not promoted: {gain}, but vs {against}"
    return True, f"promoted: {gain}; beats {against}"


def degraded_generations(evaluation: EvalResult, max_drop: float) -> str | None:
    """For preference pairs: why the fine-tuned model's own answers (scored against the chosen replies) are
    demonstrably worse than the base's in some metric (the whole 95% interval of its change below -max_drop), else
    None."""
    if evaluation.task_metric != PREFERENCE_METRIC:
        return None
    worse = [
        f"{name} {evaluation.base[name]:.3f} -> {evaluation.finetuned[name]:.3f} (95% CI of the change {low:+.3f} .. "
        f"{high:+.3f})"
        for name, (low, high) in evaluation.generation_ci95.items()
        if high < -max_drop
    ]
    if not worse:
        return None
    return (
        f"its answers against the chosen replies got worse beyond registry.max_generation_drop {max_drop:.3f}: "
        + "; ".join(worse)
    )


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
