"""Sweep efficiency: the project's pruned Optuna sweep against the same sweep unpruned and a full grid.

python -m bench.sweep_efficiency

All three search lora_r × learning_rate on the demo data with the demo's trial budget (30 steps, val loss every
10). The pruned and unpruned sweeps are `tasks.sweep.run_sweep` (seeded TPE, same N trials, successive halving
vs no pruner); the grid is what a user would otherwise write: a loop of full-budget runs over every rank × each
of GRID_LEARNING_RATES. Reported: trial training steps, wall time, best validation loss.
Targets: pruned steps ≤ 40% of unpruned; pruned best val loss within 2% of the grid's best.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path

from bench.common import REPO, target, write_results

N_TRIALS = 8
# Four log-spaced rates over the demo's search range [5e-4, 2e-2]: 4 ranks × 4 rates = 16 grid runs.
GRID_LEARNING_RATES = [5e-4, 1.7e-3, 5.8e-3, 2e-2]
FINER_EVAL_STEPS = 5


def main() -> Path:
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bench-sweep-prefect-"))
    from prefect import flow

    from flows.prepare_data import prepare_data
    from tasks.sweep import run_sweep, storage_url, study_name
    from tasks.train import run_training
    from tunegate.config import load_config
    from tunegate.report import split_refs

    home = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    config = load_config(REPO / "deployments" / "demo.yaml", [f"home={home}", f"sweep.n_trials={N_TRIALS}"])

    @flow(name="bench-sweep")
    def sweep_with(pruner: str, eval_steps: int) -> dict:
        data = prepare_data(config)
        splits = split_refs(data)
        sweep = config.sweep.model_copy(update={"pruner": pruner, "trial_eval_steps": eval_steps})
        name = study_name(f"bench-{pruner}", splits.data_fingerprint, config.model, config.train, sweep)
        # Each sweep trains in its own home: trial checkpoints are keyed by params and budget, so a later sweep
        # would resume the same params from an earlier sweep's checkpoints and look faster than it is.
        sweep_home = home / f"sweep-{pruner}-every-{eval_steps}"
        tracking = {"uri": f"sqlite:///{home / 'mlflow.db'}", "experiment_id": experiment(home), "parent_run_id": ""}
        started = time.perf_counter()
        result = run_sweep(
            name,
            storage_url(sweep, home),
            sweep,
            splits.train,
            splits.val,
            config.model,
            config.train,
            str(sweep_home),
            tracking,
        )
        return {
            "search": f"Optuna TPE, {N_TRIALS} trials, pruner={pruner}, val loss every {eval_steps} steps",
            "trials": result.n_trials,
            "pruned": result.n_pruned,
            "trial_steps": result.trial_steps_total,
            "wall_s": round(time.perf_counter() - started, 1),
            "best_val_loss": round(result.best_value, 4),
            "best": f"r={result.best_params['lora_r']} lr={result.best_params['learning_rate']:.2e}",
        }

    demo_every = config.sweep.trial_eval_steps
    pruned, unpruned = sweep_with("successive_halving", demo_every), sweep_with("none", demo_every)
    # Reports every 5 steps: the pruner can stop a trial after a sixth of its budget instead of a third.
    pruned_finer = sweep_with("successive_halving", FINER_EVAL_STEPS)

    data = split_refs(prepare_data(config))
    train_rows, val_rows = data.train.read(), data.val.read()
    budget = config.train.model_copy(
        update={
            "max_steps": config.sweep.trial_max_steps,
            "eval_steps": config.sweep.trial_eval_steps,
            "save_steps": config.sweep.trial_eval_steps,
            "early_stopping_patience": 10**6,
        }
    )
    started, grid_best, steps = time.perf_counter(), (math.inf, ""), 0
    for rank in config.sweep.lora_ranks:
        for rate in GRID_LEARNING_RATES:
            run = run_training(
                train_rows,
                val_rows,
                config.model,
                budget.model_copy(update={"lora_r": rank, "learning_rate": rate}),
                home / "grid" / f"r{rank}-lr{rate}",
            )
            steps += run.steps
            grid_best = min(grid_best, (run.best_val_loss, f"r={rank} lr={rate:.2e}"))
    grid = {
        "search": f"grid {len(config.sweep.lora_ranks)} ranks × {len(GRID_LEARNING_RATES)} rates (baseline)",
        "trials": len(config.sweep.lora_ranks) * len(GRID_LEARNING_RATES),
        "pruned": 0,
        "trial_steps": steps,
        "wall_s": round(time.perf_counter() - started, 1),
        "best_val_loss": round(grid_best[0], 4),
        "best": grid_best[1],
    }
    targets = []
    for variant, every in ((pruned, demo_every), (pruned_finer, FINER_EVAL_STEPS)):
        step_share = variant["trial_steps"] / unpruned["trial_steps"]
        gap = variant["best_val_loss"] / grid["best_val_loss"] - 1
        label = f"pruner=successive_halving, val loss every {every} steps"
        targets += [
            target(f"{label}: pruned steps ≤ 40% of unpruned", f"{100 * step_share:.0f}%", step_share <= 0.40),
            target(f"{label}: pruned best val loss within 2% of the grid's", f"{100 * gap:+.1f}%", gap <= 0.02),
        ]
    budget = config.sweep.trial_max_steps
    floors = {
        every: (budget + (N_TRIALS - 1) * every) / (N_TRIALS * budget) for every in (demo_every, FINER_EVAL_STEPS)
    }
    notes = (
        "A pruner only acts at a report, and one trial must finish: with N trials, budget B and a report every E steps "
        "the pruned sweep spends at least (B + (N - 1)·E) / (N·B) of the unpruned steps: "
        + ", ".join(f"{100 * floor:.0f}% at E={every}" for every, floor in floors.items())
        + ". wall_s of the first sweep includes the process's one-time warm-up (first model load, first training "
        "step); trial_steps is the comparable cost. Each trial also pays a fixed set-up (model load, tokenization) "
        "and saves a checkpoint at every report (for resume), which weighs on 30-step trials."
    )
    return write_results("sweep_efficiency", [pruned, pruned_finer, unpruned, grid], targets, notes)


def experiment(home: Path) -> str:
    from tunegate.tracking import experiment_id, mlflow_client

    return experiment_id(mlflow_client(f"sqlite:///{home / 'mlflow.db'}"), "bench-sweep", home)


if __name__ == "__main__":
    print(main())
