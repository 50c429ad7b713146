"""Register: log the trained model to MLflow as a pyfunc model version and move an alias, gated.

The version carries the adapter, tokenizer and prompt format, a reference to the base model, and tags
linking it to its data fingerprint, validation result, Optuna study, best params and Prefect flow run.
`champion` moves to it only when the lower bound of the paired bootstrap 95% interval of its task-metric gain
over the base reaches `registry.min_gain_over_base`, AND, when there is a champion, the lower bound of the
interval of (candidate - champion) on the same test rows is above `registry.min_gain_over_champion` (the
champion's per-row scores are reused when they were measured on the same test-set fingerprint, else it is
evaluated now), and, when `registry.min_gain_over_baseline` is set, the lower bound of (candidate - classical
baseline) reaches it. An empty or NaN evaluation, or a candidate from an unhealthy training run, is never promoted;
otherwise a refused candidate becomes `challenger`, and the reason quotes the interval.

Exports (merged, int8) that measured within `export.max_metric_drop` of the adapter are registered after it as
versions of their own (`register_exports`), aliased `<alias>-<export>` (e.g. `champion-int8`).
"""

from __future__ import annotations

from prefect import task

from tunegate.config.registry import RegistryConfig
from tunegate.config.train import ModelConfig
from tunegate.evaluation.results import EvaluationOutput
from tunegate.registry.promotion import (
    CHALLENGER,
    CHAMPION,
    REASON_TAG,
    Champion,
    current_champion,
    promotion_decision,
    readable_champion,
)
from tunegate.registry.results import ExportResult, RegistryResult
from tunegate.registry.versions import (
    close_stranded_versions,
    export_tags,
    export_version,
    interrupted_version,
    log_model_version,
    log_row_scores,
    registry_lock,
)
from tunegate.runtime.caching import stage_cache_policy
from tunegate.runtime.tracking import TrackingRef
from tunegate.training.results import TrainedModel


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
    baseline = evaluated.baseline
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
        **({"eval.drift_nats_per_token": f"{evaluation.drift.nats_per_token:.6f}"} if evaluation.drift else {}),
        **({"eval.baseline.accuracy": f"{baseline.accuracy:.6f}"} if baseline and not baseline.skipped else {}),
    }
    for key, value in version_tags.items():
        client.set_model_version_tag(model_name, version, key, value)
    with registry_lock(model_name):
        champion = current_champion(client, model_name)
        champion = champion if champion is None or str(champion.version) != version else None
        champion, champion_scores, unavailable = readable_champion(
            client, champion, evaluated, model_name, tracking.uri, model.trust_remote_code
        )
        promoted, reason = promotion_decision(
            evaluation,
            scores["base"].to_numpy(),
            scores["finetuned"].to_numpy(),
            registry,
            health,
            Champion.of(champion, champion_scores) if champion else None,
            baseline=evaluated.baseline,
        )
        if unavailable:
            reason = f"{reason}; {unavailable}"
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
        tracking_uri=tracking.uri,
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
