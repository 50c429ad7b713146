"""Training throughput: the project's training step against the tutorial set-up and TRL's SFTTrainer defaults.

python -m bench.training_throughput [--steps 30] [--warmup 5]
python -m bench.training_throughput --base smollm2-135m-instruct --steps 8 --warmup 2 --batch-size 8   (a real base)

Four set-ups, each in a fresh process (so peak RSS is its own), same base model (demo/base_model, or `--base`: a
real base from the catalogue, measured on the demo split with ours, the tutorial and TRL only), same LoRA
(r=16, alpha=32, dropout 0.05, the same target modules), same optimizer steps, batch size and rows:
- ours: `tunegate.training.job.run_training` (dynamic padding, length-grouped batches, target-only loss);
- ours_packed: the same with padding-free packing forced on (`train.packing: on`: one row per batch, position ids
  restarting per sequence, a block-diagonal mask on CPU);
- tutorial: HF `Trainer` + PEFT with `tokenizer(..., padding="max_length", max_length=512)` and the causal-LM collator;
- trl: `trl.SFTTrainer` with its defaults (prompt/completion columns, `SFTConfig` left at its defaults but for the
  step count, batch size and learning rate).
Two datasets: the demo's training split, and a long-tailed synthetic set (lognormal prompt lengths, 5-350 words).
All three train on the same text: the prompt rendered with the base model's chat template, then the answer.

Reported per run: steady-state real (non-pad) tokens/s (steps after the first `--warmup`), wall time including
set-up, padded tokens processed (every position the model computed), peak RSS, and utilisation: achieved model
FLOP/s over a matmul FLOP/s measured in the same run. Model FLOPs per real token, for LoRA on a frozen base:

    F = 4·N + 12·L·s·d      (forward 2N + input-gradient backward 2N; no weight gradients for frozen weights;
                             attention QKᵀ and AV, 4·s·d per layer forward, ×3 with backward; s = the batch's
                             mean real sequence length, L layers, d hidden size; LoRA's own terms are < 1% here)

Counting is the same for all three: a forward pre-hook on the model sums `attention_mask` (real) and
`input_ids.numel()` (processed) for every training forward.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, target, write_results

BASE_MODEL = REPO / "demo" / "base_model"
BATCH_SIZE, LEARNING_RATE, LORA_R = 16, 2e-3, 16
TUTORIAL_MAX_LENGTH = 512
VARIANTS = ("ours", "ours_packed", "tutorial", "trl")
NOTES = (
    "Why the 15× target is missed: every set-up trains on the prompt rendered with the base model's chat template "
    "(~95 real tokens per demo example), so padding to 512 wastes 84% (not the ~94% of bare ~30-token tickets the "
    "target assumes); our per-processed-token speed is also above the tutorial's (shorter sequences, cheaper "
    "attention). Packing on CPU: a packed batch has no padding at all, but its one long row attends through a "
    "block-diagonal mask over every token of the batch (quadratic in the row's length, where padded attention is "
    "quadratic in each sequence's), so it trains slower here; `train.packing: auto` keeps it off on CPU and on with "
    "a CUDA GPU, where FlashAttention's varlen kernels attend sequence by sequence (not measured yet: no GPU lent). "
    "Peak RSS on the long-tailed set (within 1% of TRL's) is the 30-step window, not a leak: ours reaches its peak "
    "in step 1 because the length-grouped sampler puts the longest batch first (an out-of-memory shows at once, not "
    "an hour in), while TRL's climbs as its random batches meet longer sequences; over an epoch both meet the same "
    "worst batch."
)
DATASETS = ("demo", "long_tailed")


# --- measuring, the same for every variant ---------------------------------------------------------------


class TokenMeter:
    """Counts real and processed tokens of training forwards and timestamps every optimizer step."""

    def __init__(self) -> None:
        self.real, self.processed, self.sequences = 0, 0, 0
        self.steps: list[tuple[float, int, int]] = []  # (time, real tokens so far, processed so far)

    def hook(self, module: Any, args: tuple, kwargs: dict) -> None:
        if not module.training:
            return
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        self.processed += int(input_ids.numel())
        self.real += int(mask.sum()) if mask is not None else int(input_ids.numel())
        self.sequences += int(input_ids.shape[0])

    def callback(self) -> Any:
        from transformers import TrainerCallback

        meter = self

        class StepClock(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **kwargs):
                model.register_forward_pre_hook(meter.hook, with_kwargs=True)
                meter.steps.append((time.perf_counter(), 0, 0))

            def on_step_end(self, args, state, control, **kwargs):
                meter.steps.append((time.perf_counter(), meter.real, meter.processed))

        return StepClock()


def matmul_flops_per_second(size: int = 1024, repeats: int = 20) -> float:
    """Dense fp32 matmul FLOP/s with this process's threads: the peak the utilisation is measured against."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started)


def model_flops_per_token(model: Any, mean_length: float) -> float:
    config = model.config
    parameters = sum(p.numel() for p in model.parameters())
    return 4 * parameters + 12 * config.num_hidden_layers * mean_length * config.hidden_size


# --- the three set-ups -------------------------------------------------------------------------------------


def lora_config() -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=LORA_R,
        lora_alpha=2 * LORA_R,
        lora_dropout=0.05,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        task_type="CAUSAL_LM",
    )


def formatted_pairs(rows: Any, tokenizer: Any) -> list[Any]:
    """The exact prompt and target text `run_training` trains on (the model's chat template), so every set-up
    sees the same tokens and tokens/s compare like with like."""
    from tunegate.lm.prompting import PromptFormat

    prompt_format = PromptFormat.from_tokenizer(tokenizer)
    return [prompt_format.format_row(row) for row in rows.to_dict("records")]


def run_ours(rows: Any, steps: int, out: Path, meter: TokenMeter, packing: str = "off") -> Any:
    from tunegate.config.train import ModelConfig, TrainConfig
    from tunegate.training.budget import fixed_plan
    from tunegate.training.job import run_training

    model = ModelConfig(base=str(BASE_MODEL), max_tokens=TUTORIAL_MAX_LENGTH)
    train = TrainConfig(
        method="lora",
        lora_r=LORA_R,
        lora_dropout=0.05,
        target_modules="all-linear",
        learning_rate=LEARNING_RATE,
        max_steps=steps,
        batch_size=BATCH_SIZE,
        eval_steps=steps,  # one evaluation, after the last step: outside the timed steps
        save_steps=steps,
        max_eval_rows=16,
        packing=packing,
    )
    # One evaluation, after the last step: outside the timed steps.
    run_training(rows, rows.head(16), model, train, fixed_plan(steps), out, callbacks=[meter.callback()])
    return None


def baseline_arguments(out: Path, steps: int) -> dict[str, Any]:
    """What the two baselines set: the shared step count, batch size and learning rate; everything else default."""
    return {
        "output_dir": str(out),
        "max_steps": steps,
        "per_device_train_batch_size": BATCH_SIZE,
        "learning_rate": LEARNING_RATE,
        "report_to": "none",
        "save_strategy": "no",
        "use_cpu": True,
        "disable_tqdm": True,
    }


def run_tutorial(rows: Any, steps: int, out: Path, meter: TokenMeter) -> Any:
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from tunegate.lm.model_loading import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(str(BASE_MODEL))
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    texts = [pair.prompt + pair.target for pair in formatted_pairs(rows, tokenizer)]
    dataset = Dataset.from_dict({"text": texts}).map(
        lambda batch: tokenizer(batch["text"], padding="max_length", max_length=TUTORIAL_MAX_LENGTH, truncation=True),
        batched=True,
        remove_columns=["text"],
    )
    model = get_peft_model(load_causal_lm(str(BASE_MODEL)), lora_config())
    args = TrainingArguments(**baseline_arguments(out, steps))
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
    Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator, callbacks=[meter.callback()]).train()
    return model


def run_trl(rows: Any, steps: int, out: Path, meter: TokenMeter) -> Any:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from tunegate.lm.model_loading import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(str(BASE_MODEL))
    pairs = formatted_pairs(rows, tokenizer)
    # TRL appends the end-of-sequence token to the completion itself.
    completions = [pair.target.removesuffix(tokenizer.eos_token) for pair in pairs]
    dataset = Dataset.from_dict({"prompt": [pair.prompt for pair in pairs], "completion": completions})
    args = SFTConfig(**baseline_arguments(out, steps))
    trainer = SFTTrainer(
        model=load_causal_lm(str(BASE_MODEL)),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(),
        callbacks=[meter.callback()],
    )
    trainer.train()
    return trainer.model


def run_ours_packed(rows: Any, steps: int, out: Path, meter: TokenMeter) -> Any:
    """Ours with padding-free packing forced on (`train.packing: on`; its `auto` keeps it off on CPU)."""
    return run_ours(rows, steps, out, meter, packing="on")


RUNNERS = {"ours": run_ours, "ours_packed": run_ours_packed, "tutorial": run_tutorial, "trl": run_trl}


def measure_one(variant: str, rows_path: Path, steps: int, warmup: int) -> dict[str, Any]:
    """Run one set-up in this process and measure it (the child side of `main`)."""
    import pandas as pd

    from tunegate.lm.model_loading import load_causal_lm

    started = time.perf_counter()
    rows = pd.read_parquet(rows_path)
    meter = TokenMeter()
    with tempfile.TemporaryDirectory(prefix=f"bench-{variant}-") as out:
        RUNNERS[variant](rows, steps, Path(out), meter)
    wall = time.perf_counter() - started
    (t0, real0, processed0), (t1, real1, processed1) = meter.steps[warmup], meter.steps[-1]
    steady_real = (real1 - real0) / (t1 - t0)
    mean_length = meter.real / max(meter.sequences, 1)
    flops_per_token = model_flops_per_token(load_causal_lm(str(BASE_MODEL)), mean_length)
    peak = matmul_flops_per_second()
    return {
        "steps": len(meter.steps) - 1,
        "real_tokens": meter.real,
        "padded_tokens_processed": meter.processed,
        "pad_share": round(1 - meter.real / meter.processed, 3),
        "steady_real_tokens_per_s": round(steady_real, 1),
        "steady_processed_tokens_per_s": round((processed1 - processed0) / (t1 - t0), 1),
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "utilisation": round(steady_real * flops_per_token / peak, 4),
        "matmul_gflops": round(peak / 1e9, 1),
    }


# --- data --------------------------------------------------------------------------------------------------


def demo_rows(workdir: Path) -> Path:
    """The demo pipeline's training split (data stages only)."""
    os.environ.setdefault("PREFECT_HOME", str(workdir / "prefect-home"))
    from flows.prepare_data import prepare_data
    from tunegate.config.loading import load_config

    config = load_config(REPO / "deployments" / "demo_tiny.yaml", [f"home={workdir / 'home'}"])
    return Path(prepare_data(config).split.train.path)


def long_tailed_rows(demo_path: Path, workdir: Path, count: int = 2000, seed: int = 0) -> Path:
    """Prompts with lognormal word counts (median 30, 5-350 words) drawn from the demo vocabulary."""
    import numpy as np
    import pandas as pd

    demo = pd.read_parquet(demo_path)
    words = " ".join(demo["prompt"]).split()
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(math.log(30), 1.0, count), 5, 350).astype(int)
    prompts = [" ".join(rng.choice(words, n)) for n in lengths]
    completions = rng.choice(demo["completion"].to_numpy(), count)
    path = workdir / "long_tailed.parquet"
    pd.DataFrame({"prompt": prompts, "completion": completions, "shape": "prompt_completion"}).to_parquet(path)
    return path


def main(argv: list[str] | None = None) -> Path:
    global BASE_MODEL, BATCH_SIZE
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--base", default=None, help="a catalogue base (tunegate base list), fetched beforehand")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "ROWS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    BATCH_SIZE = args.batch_size
    if args.base:
        from tunegate.lm.base_fetch import fetched_base

        BASE_MODEL = fetched_base(args.base)
    if args.child:
        result = measure_one(args.child[0], Path(args.child[1]), args.steps, args.warmup)
        Path(args.child[2]).write_text(json.dumps(result), encoding="utf-8")
        return Path(args.child[2])
    workdir = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    demo = demo_rows(workdir)
    datasets = {"demo": demo, "long_tailed": long_tailed_rows(demo, workdir)}
    # A real base is ~50x the toy's compute a token: its run measures the three set-ups that matter on the demo.
    variants = REAL_BASE_VARIANTS if args.base else VARIANTS
    datasets = {"demo": demo} if args.base else datasets
    shared = [
        "--steps",
        str(args.steps),
        "--batch-size",
        str(BATCH_SIZE),
        *(["--base", args.base] if args.base else []),
    ]
    rows = []
    for dataset, path in datasets.items():
        for variant in variants:
            command = [sys.executable, "-m", "bench.training_throughput", *shared]
            result_path = workdir / f"{dataset}-{variant}.json"
            command += ["--warmup", str(args.warmup), "--child", variant, str(path), str(result_path)]
            done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={**os.environ})
            if done.returncode != 0:
                raise RuntimeError(f"{variant} on {dataset} failed:\n{done.stderr[-3000:]}")
            rows.append({"dataset": dataset, "setup": variant, **json.loads(result_path.read_text())})
    if args.base:
        name = f"training_throughput_{args.base.split('-')[0]}"
        return write_results(name, rows, real_base_targets(rows, args.base), REAL_BASE_NOTES)
    return write_results("training_throughput", rows, throughput_targets(rows), NOTES)


REAL_BASE_VARIANTS = ("ours", "tutorial", "trl")
REAL_BASE_NOTES = (
    "A real base (vocabulary 49,152 for SmolLM2): ours runs the output layer only where the loss is (the label and "
    "eos tokens of a ticket, every reply token of a chat row); TRL's defaults and the tutorial compute full logits "
    "at every position (TRL also computes entropy and token accuracy from them). All three train the same LoRA on "
    "the same rows with the model's chat template and its default system prompt."
)


def real_base_targets(rows: list[dict[str, Any]], base: str) -> list[dict[str, Any]]:
    by = {r["setup"]: r for r in rows}
    ours, tutorial, trl = (by[v] for v in REAL_BASE_VARIANTS)
    vs_trl = ours["steady_real_tokens_per_s"] / trl["steady_real_tokens_per_s"]
    vs_tutorial = ours["steady_real_tokens_per_s"] / tutorial["steady_real_tokens_per_s"]
    return [
        target(f"{base}: ≥ 2× TRL defaults' real tokens/s", f"{vs_trl:.2f}×", vs_trl >= 2),
        target(
            f"{base}: peak RSS ≤ TRL's",
            f"{ours['peak_rss_mb']:.0f} vs {trl['peak_rss_mb']:.0f} MB",
            ours["peak_rss_mb"] <= trl["peak_rss_mb"],
        ),
        target(f"{base}: faster than the tutorial set-up (pad to 512)", f"{vs_tutorial:.1f}×", vs_tutorial > 1),
    ]


def throughput_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {(r["dataset"], r["setup"]): r for r in rows}
    targets = []
    for dataset in DATASETS:
        ours, packed, tutorial, trl = (by[(dataset, v)] for v in VARIANTS)
        packed_ratio = packed["steady_real_tokens_per_s"] / ours["steady_real_tokens_per_s"]
        vs_tutorial = ours["steady_real_tokens_per_s"] / tutorial["steady_real_tokens_per_s"]
        vs_trl = ours["steady_real_tokens_per_s"] / trl["steady_real_tokens_per_s"]
        targets += [
            target(f"{dataset}: ≥ 15× the tutorial set-up", f"{vs_tutorial:.1f}×", vs_tutorial >= 15),
            target(f"{dataset}: ≥ 1.5× TRL defaults", f"{vs_trl:.2f}×", vs_trl >= 1.5),
            target(
                f"{dataset}: peak RSS ≤ TRL's",
                f"{ours['peak_rss_mb']:.0f} vs {trl['peak_rss_mb']:.0f} MB",
                ours["peak_rss_mb"] <= trl["peak_rss_mb"],
            ),
            # train.packing: auto keeps packing off on CPU; this is the measurement that decision rests on.
            target(
                f"{dataset}: on CPU, padded batches ≥ packed ones (packing off by default)",
                f"packed {packed_ratio:.2f}× padded",
                packed_ratio <= 1.0,
            ),
        ]
    return targets


if __name__ == "__main__":
    print(main())
