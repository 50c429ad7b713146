"""The run report as Markdown: the flow run's Prefect artifact and the registered version's model card (its
description in the MLflow registry), rendered from the same summary as the terminal report (`report.py`)."""

from __future__ import annotations

from typing import Any

from tunegate.config.search_space import formatted_params
from tunegate.reporting.data_report import ACCOUNTING_KEYS
from tunegate.reporting.finetuned import FinetuneResult
from tunegate.reporting.report import (
    baseline_lines,
    drift_line,
    evaluation_columns,
    export_cells,
    finetune_summary,
    generation_change,
    health_line,
    number,
    table_models,
)


def export_markdown(exports: dict[str, dict[str, Any]], metric: str) -> str:
    if not exports:
        return ""
    rows = "\n".join(f"| {name} | {' | '.join(export_cells(name, build))} |" for name, build in exports.items())
    return (
        f"\n## Builds\n| build | {metric} | drop vs adapter | p50 ms/row | p95 ms/row | weights MiB | registered |\n"
        f"|---|---|---|---|---|---|---|\n{rows}\n"
    )


def evaluation_table_markdown(evaluation: dict[str, Any]) -> str:
    columns = evaluation_columns(evaluation)
    rows = [
        f"| {label} | " + " | ".join(number(evaluation[key].get(name)) for name in columns) + " |"
        for label, key in table_models(evaluation)
    ]
    return "\n".join([f"| model | {' | '.join(columns)} |", "|---" * (len(columns) + 1) + "|", *rows])


def finetune_markdown(summary: dict[str, Any]) -> str:
    """The run report as Markdown: data accounting, validation, sweep choice, evaluation table, registry decision."""
    data, evaluation, sweep, registry = summary["data"], summary["eval"], summary["sweep"], summary["registry"]
    train = summary["train"]
    metric = evaluation["task_metric"]
    low, high = evaluation["delta_ci95"]
    accounting = "\n".join(f"| {key} | {data[key]} |" for key in ACCOUNTING_KEYS)
    failing = ", ".join(f"{c} ({n})" for c, n in summary["validation"]["failures_by_check"].items() if n) or "none"
    per_label = "\n".join(f"| {label} | {number(f1)} |" for label, f1 in evaluation["per_label_f1"].items())
    per_label_table = f"\n| label | F1 |\n|---|---|\n{per_label}\n" if per_label else ""
    generation_markdown = f"{generation_change(evaluation)}.\n" if evaluation.get("generation_ci95") else ""
    if evaluation.get("drift"):  # what the candidate forgot (what it measures: tunegate/evaluation/drift.py)
        generation_markdown += f"\nDrift {drift_line(evaluation['drift']).removeprefix('drift ')}.\n"
    for line in (text.strip() for text in baseline_lines(evaluation)):
        generation_markdown += f"\n{line[:1].upper()}{line[1:]}.\n"
    chosen_markdown = ", ".join(f"{name} **{value}**" for name, value in formatted_params(sweep["best_params"]).items())
    return f"""# Fine-tuning run

## Data
| rows | count |
|---|---|
{accounting}
| val/test rows with a near duplicate in train | {data["test_train_near_duplicates"]} |

Validation passed: **{summary["validation"]["success"]}**; failed checks: {failing}.

## Sweep
{sweep["n_trials"]} trials, {sweep["n_pruned"]} pruned, {sweep["trial_steps_total"]} trial steps, judged on
{sweep["objective"]} at the shipped budget. Chosen: trial {sweep["chosen_trial"]}, {chosen_markdown}
({sweep["objective"]} {number(sweep["best_value"], ".4f")}). Candidate: {train["source"]}, step {train["best_step"]}
of {train["steps"]}. Training health: {health_line(train["health"])}.

## Evaluation ({evaluation["rows"]} test rows)
{evaluation_table_markdown(evaluation)}

Delta {metric}: **{number(evaluation["delta"], "+.3f")}** (95% CI {number(low, "+.3f")} .. {number(high, "+.3f")}).
{generation_markdown}{per_label_table}{export_markdown(summary.get("exports", {}), metric)}
## Registry
{registry["model_name"]} v{registry["version"]} → **{", ".join(registry["aliases"])}**: {registry["reason"]}
"""


def publish_finetune_artifact(result: FinetuneResult) -> None:
    """The run report as the flow run's Markdown artifact, and as the registered version's model card (its
    description in the MLflow registry: how the version was made, judged and can be loaded)."""
    from prefect.artifacts import create_markdown_artifact

    summary = finetune_summary(result)
    create_markdown_artifact(finetune_markdown(summary), key="finetune-report", description="Fine-tuning run report.")
    registered = result.registered
    result.tracking.client().update_model_version(
        registered.model_name, registered.version, description=model_card(summary)
    )


def model_card(summary: dict[str, Any]) -> str:
    """A model version's description: the run report, retitled, with how to load this version."""
    registry = summary["registry"]
    version_uri = f"models:/{registry['model_name']}/{registry['version']}"
    report = finetune_markdown(summary).replace(
        "# Fine-tuning run", f"# {registry['model_name']} v{registry['version']}", 1
    )
    return (
        report
        + f"""
## Load it
```python
import mlflow, pandas as pd

mlflow.set_tracking_uri("{summary["mlflow"]["tracking_uri"]}")
model = mlflow.pyfunc.load_model("{version_uri}")   # or "{registry["model_uri"]}" while the alias is there
model.predict(pd.DataFrame({{"prompt": ["My parcel never arrived."]}}))
```
"""
    )
