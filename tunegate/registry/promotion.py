"""The gate: whether a candidate becomes `champion` (paired bootstrap intervals of its gain over the base and over
the current champion, on the same test rows) or stays `challenger`, with a one-line reason that quotes the
interval; and the champion's per-row scores on the candidate's rows (logged, or measured now from its weights)."""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tunegate.config.registry import RegistryConfig
from tunegate.core.errors import one_line
from tunegate.evaluation.drift import describe_drift, too_much_drift
from tunegate.evaluation.preference import PREFERENCE_METRIC, pair_scores, reference_logprobs
from tunegate.evaluation.results import BaselineResult, EvalResult, EvaluationOutput
from tunegate.evaluation.scoring import paired_bootstrap_ci, scores_for_metric
from tunegate.registry.serving import (
    GENERATION_DEFAULTS,
    registered_build,
    registered_model_answers,
)
from tunegate.runtime.stages import run_logger
from tunegate.training.health import HealthReport

CHAMPION, CHALLENGER = "champion", "challenger"


REASON_TAG = "promotion_reason"


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


def readable_champion(
    client: Any, champion: Any | None, evaluated: EvaluationOutput, model_name: str, uri: str, trust_remote_code: bool
) -> tuple[Any | None, Any, str | None]:
    """(champion, its per-row scores on the candidate's rows, why it could not be read): a champion whose logged
    scores or weights are gone (its artifacts deleted) cannot be compared with, so the candidate is judged against
    the base alone and the reason says so; the version is never left without an alias and a reason."""
    from mlflow.exceptions import MlflowException

    if champion is None:
        return None, None, None
    try:
        return champion, champion_scores_on(client, champion, evaluated, model_name, uri, trust_remote_code), None
    except (MlflowException, OSError) as exc:
        run_logger().warning("champion v%s cannot be read: %s", champion.version, one_line(exc))
        return None, None, f"champion v{champion.version} unavailable ({one_line(exc)[:160]}): judged against the base"


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
    drift: float | None = None  # its drift from its base (nats/token), when its registration measured one

    @classmethod
    def of(cls, version: Any, scores: np.ndarray) -> Champion:
        """The champion's MLflow model version with its per-row scores on the candidate's rows."""
        drift = (version.tags or {}).get("eval.drift_nats_per_token")
        return cls(version=str(version.version), scores=scores, drift=float(drift) if drift is not None else None)


def promotion_decision(
    evaluation: EvalResult,
    base_scores: np.ndarray,
    tuned_scores: np.ndarray,
    registry: RegistryConfig,
    health: HealthReport,
    champion: Champion | None,
    seed: int = 0,
    baseline: BaselineResult | None = None,
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
    over_baseline = baseline_bar(baseline, tuned_scores, registry.min_gain_over_baseline, seed)
    if over_baseline is not None:
        passed, versus = over_baseline
        if not passed:
            return False, f"not promoted: {gain}, but vs {versus}"
        gain += f"; beats {versus}"
    degraded = degraded_generations(evaluation, registry.max_generation_drop) or too_much_drift(
        evaluation.drift, registry.max_drift
    )
    if degraded:
        return False, f"not promoted: {gain}, but {degraded}"
    if evaluation.drift is not None:
        gain += f"; drift {describe_drift(evaluation.drift)}"
    if champion is None:
        return True, f"promoted: {gain}; no champion yet"
    c_low, c_high = paired_bootstrap_ci(champion.scores, tuned_scores, seed)
    champion_drift = f", drift {champion.drift:.3f} nats/token" if champion.drift is not None else ""
    against = (
        f"champion v{champion.version} {float(np.mean(champion.scores)):.3f} on these rows{champion_drift} "
        f"(95% CI of the difference {c_low:+.3f} .. {c_high:+.3f}, lower bound must exceed "
        f"{registry.min_gain_over_champion:+.3f})"
    )
    if not c_low > registry.min_gain_over_champion:
        return False, f"not promoted: {gain}, but vs {against}"
    return True, f"promoted: {gain}; beats {against}"


def baseline_bar(
    baseline: BaselineResult | None, tuned_scores: np.ndarray, min_gain: float | None, seed: int
) -> tuple[bool, str] | None:
    """(the lower bound of (tuned - baseline) reaches min_gain?, the comparison quoting the interval), or None when
    the bar is off or the task has no baseline (free text, preference pairs, eval.baseline off)."""
    if min_gain is None or baseline is None or baseline.skipped:
        return None
    baseline_scores = np.array(baseline.scores, dtype=float)
    if len(baseline_scores) != len(tuned_scores):
        raise ValueError(f"the baseline scored {len(baseline_scores)} rows, the candidate {len(tuned_scores)}")
    low, high = paired_bootstrap_ci(baseline_scores, tuned_scores, seed)
    gain = float(np.mean(tuned_scores - baseline_scores))
    versus = (
        f"the classical baseline {baseline.model} {baseline.accuracy:.3f} on these rows (gain {gain:+.3f}, "
        f"95% CI {low:+.3f} .. {high:+.3f}, lower bound needed {min_gain:+.3f}: registry.min_gain_over_baseline)"
    )
    return low >= min_gain, versus


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
