"""Register: log the trained model to MLflow as a pyfunc model version and move an alias, gated.

The version carries the adapter, tokenizer and prompt format, a reference to the base model, and tags
linking it to its data fingerprint, validation result, Optuna study, best params and Prefect flow run.
`champion` moves to it only when it beats the base model by `registry.min_gain_over_base` on the task
metric AND beats the current champion evaluated on the same test rows (reusing the champion's tagged
score when it was measured on the same test-set fingerprint); otherwise it becomes `challenger`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import task
from pydantic import BaseModel

from tasks.evaluate import EvalResult, scores_for_metric
from tunegate.caching import stage_cache_policy
from tunegate.config import ModelConfig, RegistryConfig
from tunegate.refs import TableRef
from tunegate.serving import ADAPTER_ARTIFACT, AdapterGenerator, base_model_reference
from tunegate.tracking import fluent_tracking, mlflow_client

CHAMPION, CHALLENGER = "champion", "challenger"
# A waiting run gives up after 30 minutes: the guarded section is seconds, or one champion re-evaluation.
REGISTRY_LOCK_TIMEOUT = 1800.0
SERVING_REQUIREMENTS = ["mlflow", "torch", "transformers", "peft", "pandas", "tunegate"]


class RegistryResult(BaseModel):
    """Which version was registered and where the aliases ended."""

    model_name: str
    version: str
    aliases: list[str]
    promoted: bool
    reason: str
    model_uri: str


# Lineage tags describe a version (its flow run id differs on every run) but do not decide it: the adapter's
# fingerprint and its evaluation do. Leaving them out of the key keeps a rerun from registering a copy.
@task(cache_policy=stage_cache_policy(excluded=("tracking", "lineage")))
def register_model(
    adapter_dir: str,
    adapter_fingerprint: str,
    evaluation: EvalResult,
    eval_rows: TableRef,
    model: ModelConfig,
    registry: RegistryConfig,
    model_name: str,
    lineage: dict[str, str],
    tracking: dict[str, str],
) -> RegistryResult:
    """Log and register a version, then set `champion` or `challenger` with the reason.

    Reading the champion, deciding and moving the alias happen under one registry-wide lock (a Prefect
    global concurrency limit of 1 per model), so two runs finishing at once cannot both read "no
    champion" and leave the alias on whichever wrote last."""
    client = mlflow_client(tracking["uri"])
    version = log_model_version(adapter_dir, model, model_name, tracking)
    version_tags = {
        **lineage,
        "adapter_fingerprint": adapter_fingerprint,
        "test_fingerprint": eval_rows.fingerprint,
        "task_metric": evaluation.task_metric,
        f"eval.{evaluation.task_metric}": f"{evaluation.finetuned[evaluation.task_metric]:.6f}",
        f"eval.base.{evaluation.task_metric}": f"{evaluation.base[evaluation.task_metric]:.6f}",
    }
    for key, value in version_tags.items():
        client.set_model_version_tag(model_name, version, key, value)
    with registry_lock(model_name):
        champion = current_champion(client, model_name)
        champion_score = (
            champion_score_on(champion, evaluation.task_metric, eval_rows, model_name, tracking["uri"])
            if champion
            else None
        )
        promoted, reason = promotion_decision(evaluation, registry.min_gain_over_base, champion, champion_score)
        client.set_model_version_tag(model_name, version, "promotion_reason", reason)
        alias = CHAMPION if promoted else CHALLENGER
        client.set_registered_model_alias(model_name, alias, version)
    return RegistryResult(
        model_name=model_name,
        version=version,
        aliases=[alias],
        promoted=promoted,
        reason=reason,
        model_uri=f"models:/{model_name}@{alias}",
    )


def log_model_version(adapter_dir: str, model: ModelConfig, model_name: str, tracking: dict[str, str]) -> str:
    """Log the pyfunc (adapter + tokenizer + prompt format, base by reference) into the pipeline's run
    and register it; returns the new version number."""
    import mlflow

    with fluent_tracking(tracking["uri"]), mlflow.start_run(run_id=tracking["parent_run_id"]):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=AdapterGenerator(),
            artifacts={ADAPTER_ARTIFACT: adapter_dir},
            model_config={"base_model": base_model_reference(model.base), "trust_remote_code": model.trust_remote_code},
            pip_requirements=SERVING_REQUIREMENTS,
            registered_model_name=model_name,
        )
    return str(info.registered_model_version)


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


def champion_score_on(champion: Any, metric: str, eval_rows: TableRef, model_name: str, uri: str) -> float:
    """The champion's task metric on these test rows: its tag if measured on the same rows, else evaluated now."""
    tags = champion.tags or {}
    if tags.get("test_fingerprint") == eval_rows.fingerprint and f"eval.{metric}" in tags:
        return float(tags[f"eval.{metric}"])
    import mlflow

    rows = eval_rows.read()
    with fluent_tracking(uri):
        champion_model = mlflow.pyfunc.load_model(f"models:/{model_name}/{champion.version}")
    generations = champion_model.predict(rows)
    return float(scores_for_metric(metric, rows, list(generations)).mean())


def promotion_decision(
    evaluation: EvalResult, min_gain: float, champion: Any | None, champion_score: float | None
) -> tuple[bool, str]:
    """(promote?, one-line reason)."""
    metric = evaluation.task_metric
    tuned, base = evaluation.finetuned[metric], evaluation.base[metric]
    gain = f"{metric} {tuned:.3f} vs base {base:.3f} (gain {tuned - base:+.3f}, needed {min_gain:+.3f})"
    if tuned - base < min_gain:
        return False, f"not promoted: {gain}"
    if champion is not None and champion_score is not None and tuned <= champion_score:
        return False, f"not promoted: {gain}, but champion v{champion.version} has {champion_score:.3f} on these rows"
    against = f"beats champion v{champion.version} ({champion_score:.3f})" if champion else "no champion yet"
    return True, f"promoted: {gain}; {against}"


def lineage_tags(
    data_fingerprint: str,
    validation_success: bool,
    study: str,
    best_params: dict,
    flow_run_id: str,
    source_fingerprint: str,
    config_fingerprint: str,
) -> dict[str, str]:
    return {
        "data_fingerprint": data_fingerprint,
        "source_fingerprint": source_fingerprint,
        "config_fingerprint": config_fingerprint,
        "gx_validation_success": str(validation_success).lower(),
        "optuna_study": study,
        "best_params": json.dumps(best_params, sort_keys=True),
        "prefect_flow_run_id": flow_run_id,
    }
