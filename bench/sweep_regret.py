"""Sweep regret: the model the pipeline ships against the best of an exhaustive full-budget grid, on test data.

python -m bench.sweep_regret [--config deployments/demo.yaml] [--name sweep_regret]

In one process, on the same data, split and test rows:
- pipeline: `flows.finetune` as configured (trials at the shipped budget judged on validation accuracy, rungs,
  the best trial's checkpoint registered); its steps are the sweep's trial steps (there is no second run);
- grid (the reference): every rank in `sweep.lora_ranks` x 4 learning rates log-spaced over
  [learning_rate_min, learning_rate_max], each trained on the final budget with the same recipe and scored on
  the test split;
- old path: what the pipeline did before, in the same run: 30-step proxy trials judged on val loss, then the
  winner retrained on the final budget (`sweep.trial_max_steps=30 sweep.objective=val_loss sweep.final=refit`).
Reported: each one's test task metric, regret (grid best - it) and training steps.
Targets: pipeline regret <= 0.02; pipeline steps <= 40% of the grid's.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench.common import REPO, target, write_results

GRID_RATES = 4
OLD_PATH = ["sweep.trial_max_steps=30", "sweep.objective=val_loss", "sweep.final=refit", "sweep.rungs=1"]


def log_spaced(low: float, high: float, count: int) -> list[float]:
    """`count` rates from low to high, evenly spaced in log space (both ends included)."""
    return [low * (high / low) ** (i / (count - 1)) for i in range(count)]


def main(config_path: str, name: str) -> Path:
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bench-regret-prefect-"))
    from tunegate.config.loading import load_config

    home = Path(tempfile.mkdtemp(prefix="bench-regret-"))
    config = load_config(REPO / config_path, [f"home={home / 'pipeline'}"])
    pipeline = pipeline_row("pipeline (best trial at the shipped budget)", config)
    old = pipeline_row(
        "old path (30-step proxy on val loss + retrain)",
        load_config(REPO / config_path, [f"home={home / 'old'}", *OLD_PATH]),
    )
    grid, grid_rows = grid_search(config, home / "grid")
    best = max(grid_rows, key=lambda row: row["test_metric"])
    for row in (pipeline, old, grid):
        row["regret"] = round(best["test_metric"] - row["test_metric"], 4)
    metric = pipeline["metric"]
    targets = [
        target(f"pipeline regret ≤ 0.02 {metric}", pipeline["regret"], pipeline["regret"] <= 0.02),
        target(
            "pipeline steps ≤ 40% of the grid's",
            f"{100 * pipeline['steps'] / grid['steps']:.0f}%",
            pipeline["steps"] <= 0.4 * grid["steps"],
        ),
    ]
    notes = (
        f"Config {config_path}: final budget {grid_rows[0]['steps']} steps. Grid cells (rank, rate → test {metric}): "
        + "; ".join(f"r={r['lora_r']} lr={r['learning_rate']:.1e} → {r['test_metric']:.3f}" for r in grid_rows)
        + f". Grid best: r={best['lora_r']} lr={best['learning_rate']:.1e}. The pipeline's and the old path's test "
        "rows are the grid's (same data fingerprint and split seed)."
    )
    return write_results(name, [pipeline, old, grid], targets, notes)


def pipeline_row(label: str, config) -> dict:
    from flows.finetune import finetune
    from tunegate.reporting.report import finetune_summary

    started = time.perf_counter()
    summary = finetune_summary(finetune(config))
    metric = summary["eval"]["task_metric"]
    refit_steps = summary["train"]["steps"] if summary["train"]["source"] == "refit" else 0
    return {
        "search": label,
        "metric": metric,
        "test_metric": round(summary["eval"]["finetuned"][metric], 4),
        "chosen": "r={lora_r} lr={learning_rate:.1e}".format(**summary["sweep"]["best_params"]),
        "trials": summary["sweep"]["n_trials"],
        "pruned": summary["sweep"]["n_pruned"],
        "steps": summary["sweep"]["trial_steps_total"] + refit_steps,
        "wall_s": round(time.perf_counter() - started, 1),
    }


def grid_search(config, home: Path) -> tuple[dict, list[dict]]:
    """Every rank x GRID_RATES rates on the final budget, each scored on the test split like the pipeline's model."""
    from flows.prepare_data import prepare_data
    from tasks.evaluate import evaluate_final_model
    from tunegate.core.refs import AdapterRef
    from tunegate.training.job import TrainingJob

    config = config.model_copy(update={"home": str(home)})
    splits = prepare_data(config).split
    job = TrainingJob.for_trials(config, splits)
    started, rows = time.perf_counter(), []
    rate_range = config.sweep.learning_rate_range(config.train.method, config.train.objective)
    for rank in config.sweep.lora_ranks:
        for rate in log_spaced(*rate_range, GRID_RATES):
            result = job.with_params({"lora_r": rank, "learning_rate": rate}).run(home / f"r{rank}-lr{rate:.2e}")
            adapter = AdapterRef.of(result.adapter_dir, result.method)
            scored = evaluate_final_model.fn(adapter, splits.test, config.evaluation()).result
            value = scored.finetuned[scored.task_metric]
            rows.append({"lora_r": rank, "learning_rate": rate, "test_metric": round(value, 4), "steps": result.steps})
            print(f"grid r={rank} lr={rate:.2e}: {scored.task_metric} {value:.3f} in {result.steps} steps", flush=True)
    best = max(rows, key=lambda row: row["test_metric"])
    summary = {
        "search": f"grid {len(config.sweep.lora_ranks)} ranks × {GRID_RATES} rates (reference)",
        "metric": scored.task_metric,
        "test_metric": best["test_metric"],
        "chosen": f"r={best['lora_r']} lr={best['learning_rate']:.1e}",
        "trials": len(rows),
        "pruned": 0,
        "steps": sum(row["steps"] for row in rows),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    return summary, rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="deployments/demo.yaml", help="pipeline config (relative to the repo)")
    parser.add_argument("--name", default="sweep_regret", help="results name: bench/results/<name>.{json,md}")
    args = parser.parse_args()
    print(main(args.config, args.name))
