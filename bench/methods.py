"""Training methods side by side: the whole pipeline on the demo data once per `train.method`.

python -m bench.methods [--methods lora full prompt_tuning prefix_tuning p_tuning dpo] [--update] [--config CONFIG]

`--update` replaces only the rows of the methods run in the committed results (one method measured again alone).
Run it with nothing else on the machine: the tokens/s column is the chosen trial's, and a second process on two
cores halves it.

Each method runs `python -m flows.finetune --config <config>` (deployments/demo_tiny.yaml, the toy base, unless
`--config` names another: deployments/demo.yaml trains SmolLM2) in a fresh process with a fresh home and the config's
data, budget, sweep and evaluation (written under the table, `run_notes`). LoRA keeps the config's learning-rate
range; every other method searches its own default range (`tunegate.config.sweep.LEARNING_RATE_RANGES`). `dpo` is
LoRA trained by DPO on the demo's preference pairs instead of the config's data (`DPO_OVERRIDES`), from the same base:
its task metric is preference accuracy, in its own column. Exports are off (they are measured by the pipeline's own
report).

Reported per method: the registered model's test accuracy and the base's, the 95% interval of the gain, the mean
loss on target tokens of the base and of the tuned model (teacher forcing, the same test rows), the drift from the
base on the retention prompts (nats/token with its interval, and how often the first 8 answer tokens still match:
"LoRA learns less and forgets less", measured), the trainable parameters, the chosen trial's training tokens/s
(real tokens, steady state, as the pipeline measures it), the sweep's trial steps, the chosen params and the whole
run's wall time on this machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import RESULTS, run_timed, target, write_results

METHODS = ("lora", "full", "prompt_tuning", "prefix_tuning", "p_tuning", "dpo")
DEFAULT_RANGE = ["sweep.learning_rate_min=null", "sweep.learning_rate_max=null"]
# DPO learns from pairs, not labels: the demo's preference pairs (demo/data/preferences.jsonl, 657 of them), on the
# same base and budget as the other rows, LoRA in DPO's default rate range (a tenth of LoRA's), trials judged on the
# DPO loss of the val pairs. Its task metric is preference accuracy (the base, its own reference, scores 0.5).
DPO_OVERRIDES = [
    "train.objective=dpo",
    "train.method=lora",
    "data.sources=[{path: demo/data/preferences.jsonl}]",
    "task.labels=null",
    *DEFAULT_RANGE,
]


def method_overrides(method: str) -> list[str]:
    """What one row changes in the config: the method, and its default rate range (LoRA keeps the config's).

    >>> method_overrides("lora"), method_overrides("full")[1:]
    (['train.method=lora'], ['sweep.learning_rate_min=null', 'sweep.learning_rate_max=null'])
    """
    if method == "dpo":
        return DPO_OVERRIDES
    return [f"train.method={method}", *([] if method == "lora" else DEFAULT_RANGE)]


def run_method(method: str, home: Path, config: str = "deployments/demo_tiny.yaml") -> dict[str, Any]:
    """The pipeline with `method`; one result row from its summary."""
    summary_path = home / "summary.json"
    overrides = [f"home={home}", *method_overrides(method), "export.merged=false", "export.int8=false"]
    command = [sys.executable, "-m", "flows.finetune", "--config", config]
    command += [part for override in overrides for part in ("--set", override)]
    seconds, _ = run_timed([*command, "--summary-out", str(summary_path)])
    summary = json.loads(summary_path.read_text())
    evaluation, train, sweep = summary["eval"], summary["train"], summary["sweep"]
    metric = evaluation["task_metric"]
    low, high = evaluation["delta_ci95"]
    chosen = {name: value for name, value in sweep["best_params"].items() if value is not None}
    return {
        "method": method,
        metric: round(evaluation["finetuned"][metric], 3),
        f"base {metric}": round(evaluation["base"][metric], 3),
        "gain 95% CI": f"{low:+.3f} .. {high:+.3f}",
        "target loss (base → tuned)": f"{evaluation['base']['loss']:.2f} → {evaluation['finetuned']['loss']:.2f}",
        # What the method forgot: drift from the base on the retention prompts (tunegate/evaluation/drift.py).
        "drift nats/token (95% CI)": drift_cell(evaluation.get("drift")),
        "first 8 tokens match": round(drift["first_tokens_match"], 3) if (drift := evaluation.get("drift")) else None,
        "trainable params": train["trainable_parameters"],
        "train tokens/s": round(train["tokens_per_second"]),
        "trial steps": sweep["trial_steps_total"],
        "chosen": ", ".join(f"{k}={v:.1e}" if k == "learning_rate" else f"{k}={v}" for k, v in chosen.items()),
        "promoted": summary["registry"]["promoted"],
        "wall_s": round(seconds),
    }


def drift_cell(drift: dict[str, Any] | None) -> str:
    """`0.123 (0.100 .. 0.150)`, or n/a where drift was not measured."""
    if not drift:
        return "n/a"
    low, high = drift["nats_per_token_ci95"]
    return f"{drift['nats_per_token']:.3f} ({low:.3f} .. {high:.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--update", action="store_true", help="keep the committed rows of the other methods")
    parser.add_argument(
        "--config", default="deployments/demo_tiny.yaml", help="the pipeline config (deployments/demo.yaml: SmolLM2)"
    )
    args = parser.parse_args()
    name = results_name(args.config)
    measured = {}
    with tempfile.TemporaryDirectory(prefix="bench-methods-") as scratch:
        for method in args.methods:
            measured[method] = run_method(method, Path(scratch) / method, args.config)
            print(json.dumps(measured[method]), flush=True)
    committed = json.loads((RESULTS / f"{name}.json").read_text())["rows"] if args.update else []
    kept = {row["method"]: row for row in committed}
    rows = [measured.get(method) or kept[method] for method in METHODS if method in measured or method in kept]
    every_one = all(row["promoted"] is not None for row in rows)
    targets = [target("every method runs the whole DAG (train, evaluate, gate, register)", len(rows), every_one)]
    write_results(name, rows, targets, run_notes(args.config))


def results_name(config: str) -> str:
    """`methods` for the toy base's config (the committed table `make bench` refreshes), `methods-<config stem>`
    for another (deployments/demo.yaml: `methods-demo`, SmolLM2), so one base's table never overwrites another's.

    >>> results_name("deployments/demo_tiny.yaml"), results_name("deployments/demo.yaml")
    ('methods', 'methods-demo')
    """
    stem = Path(config).stem
    return "methods" if stem == "demo_tiny" else f"methods-{stem}"


def run_notes(config: str) -> str:
    """What every row shares, read from the config: base, budget, sweep and evaluation."""
    from tunegate.config.loading import load_config

    pipeline = load_config(config)
    train, sweep = pipeline.train, pipeline.sweep
    epochs = f"{train.epochs:g} epoch" + ("" if train.epochs == 1 else "s")
    budget = f"{train.max_steps} steps" if train.max_steps else epochs
    return (
        f"{config}: base {pipeline.model.base}, budget {budget} of {train.batch_size} rows, {sweep.n_trials} trials "
        f"({sweep.pruner}), {pipeline.eval.max_rows} test rows; LoRA in the config's rate range, the others in "
        "their default ranges; dpo: LoRA trained by DPO on the demo's preference pairs, scored by preference "
        "accuracy. Tokens/s are the chosen trial's, on this machine."
    )


if __name__ == "__main__":
    main()
