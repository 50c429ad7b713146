"""One training run's bookkeeping, the same for SFT and DPO: where it checkpoints and resumes from (the newest
intact checkpoint), the callbacks that feed the pruner and watch its health, and what it saves and reports."""

from __future__ import annotations

import json
import math
import resource
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunegate.config.train import TrainConfig
from tunegate.core.refs import write_text_atomic
from tunegate.lm.prompting import PromptFormat
from tunegate.runtime.stages import run_logger
from tunegate.training.budget import TrainingPlan
from tunegate.training.fast_path import FastPath, fast_path
from tunegate.training.health import HealthWatch
from tunegate.training.results import TrainResult

if TYPE_CHECKING:
    from tunegate.training.callbacks import EvaluationHook


ADAPTER_DIR, CHECKPOINT_DIR = "adapter", "checkpoints"


@dataclass
class RunWatch:
    """One training run's bookkeeping, the same for SFT and DPO: where it checkpoints and resumes from, and the
    callbacks that feed the pruner (evaluation history), count real tokens and watch its health."""

    plan: TrainingPlan
    recipe: TrainConfig
    out_dir: Path
    last_checkpoint: str | None
    history: Any
    throughput: Any
    health: HealthWatch
    fast: FastPath

    @classmethod
    def of(
        cls,
        on_evaluate: EvaluationHook | None,
        plan: TrainingPlan,
        recipe: TrainConfig,
        out_dir: Path,
        removable_loss: float | None = None,
        packs: bool = True,
    ) -> RunWatch:
        """`packs`: whether this trainer can take packed batches (TRL's DPO pads its pairs itself)."""
        from tunegate.training.callbacks import EvaluationHistory, Throughput

        fast = fast_path(recipe)
        if fast.packing and not packs:
            fast = replace(fast, packing=False, reasons=[*fast.reasons, "packing off here (DPO pads its pairs)"])
        run_logger().info(fast.describe())
        return cls(
            plan=plan,
            recipe=recipe,
            out_dir=out_dir,
            last_checkpoint=last_complete_checkpoint(out_dir / CHECKPOINT_DIR),
            history=EvaluationHistory(on_evaluate, plan.metric),
            throughput=Throughput(),
            health=HealthWatch(recipe.health, judged_step(plan, recipe), removable_loss=removable_loss),
            fast=fast,
        )

    @property
    def checkpoints(self) -> Path:
        return self.out_dir / CHECKPOINT_DIR

    def callbacks(self, extra: list[Any] | None) -> list[Any]:
        """Evaluations at the rungs, health, history, throughput, early stopping, then the caller's."""
        from transformers import EarlyStoppingCallback

        from tunegate.training.callbacks import EvaluateAt, TrainingHealthCallback

        return [
            EvaluateAt(self.plan.evaluation_steps, self.recipe.save_steps),
            TrainingHealthCallback(self.health),
            self.history,
            self.throughput,
            EarlyStoppingCallback(self.recipe.early_stopping_patience),
            *(extra or []),
        ]

    def trained(self, trainer: Any, prompt_format: PromptFormat, overlength_rows: int) -> TrainResult:
        """Train (resuming from the last intact checkpoint), save the kept weights, and report the run."""
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # without a terminal it prints every log dict; tqdm shows progress
        trainer.train(resume_from_checkpoint=self.last_checkpoint)
        tokenizer = trainer.processing_class
        adapter_dir = save_trained(trainer, tokenizer, prompt_format, self.out_dir / ADAPTER_DIR)
        best_step = kept_step(trainer, self.plan)
        return TrainResult(
            adapter_dir=str(adapter_dir),
            method=self.recipe.method,
            steps=trainer.state.global_step,
            objective=self.plan.metric,
            best_objective=value_at(self.history.objective, best_step),
            best_step=best_step,
            best_val_loss=value_at(self.history.losses, best_step),
            val_loss_history=self.history.losses,
            objective_history=self.history.objective,
            trainable_parameters=sum(w.numel() for w in trainer.model.parameters() if w.requires_grad),
            train_tokens_seen=self.throughput.tokens,
            tokens_per_second=self.throughput.tokens_per_second(),
            peak_memory_mb=peak_memory_mb(),
            resumed_from_step=checkpoint_step(self.last_checkpoint),
            overlength_rows=overlength_rows,
            stopped_early=trainer.state.global_step < self.plan.max_steps,
            health=self.health.report(),
        )


def judged_step(plan: TrainingPlan, recipe: TrainConfig) -> int:
    """The step whose evaluation judges whether the loss falls: the first rung, not before
    `health.judged_after_steps`, and never after the run's last step."""
    return min(plan.max_steps, max(plan.first_rung, recipe.health.judged_after_steps))


def kept_step(trainer: Any, plan: TrainingPlan) -> int:
    """The step whose weights were saved: the best checkpoint's, or the last step's."""
    best = trainer.state.best_global_step if plan.keep_best_checkpoint else None
    return int(best) if best else trainer.state.global_step


def value_at(history: list[tuple[int, float]], step: int) -> float:
    """The value measured at `step`, else the last one measured, else NaN (a run stopped before any evaluation)."""
    at_step = [value for s, value in history if s == step]
    return at_step[-1] if at_step else (history[-1][1] if history else math.nan)


def save_trained(trainer: Any, tokenizer: Any, prompt_format: PromptFormat, adapter_dir: Path) -> Path:
    """The best weights (adapter only for LoRA), the tokenizer and the prompt format, in one directory."""
    if not trainer.is_world_process_zero():  # one writer when several processes train (DDP): rank 0
        return adapter_dir
    adapter_dir.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(adapter_dir, safe_serialization=True)
    sort_target_modules(adapter_dir / "adapter_config.json")
    tokenizer.save_pretrained(adapter_dir)
    prompt_format.save(adapter_dir)
    return adapter_dir


def sort_target_modules(adapter_config: Path) -> None:
    """PEFT writes `target_modules` from a set, in an order that changes with the interpreter's hash seed: two runs
    with identical weights got different adapter fingerprints (the demo's 7 modules in another order). Sorted,
    the same weights always fingerprint the same."""
    if not adapter_config.is_file():  # full fine-tuning saves whole weights, no adapter config
        return
    settings = json.loads(adapter_config.read_text(encoding="utf-8"))
    if isinstance(settings.get("target_modules"), list):
        settings["target_modules"] = sorted(settings["target_modules"])
        write_text_atomic(adapter_config, json.dumps(settings, indent=2, sort_keys=True) + "\n")


def last_complete_checkpoint(checkpoints: Path) -> str | None:
    """The newest intact checkpoint: a run killed while saving (or a torn disk write) leaves a directory that
    must not be resumed from; it is skipped with a warning and the one before it is used."""
    newest_first = sorted(checkpoints.glob("checkpoint-*"), key=lambda path: -int(path.name.rsplit("-", 1)[1]))
    for path in newest_first:
        problem = checkpoint_problem(path)
        if problem is None:
            return str(path)
        run_logger().warning("checkpoint %s is not resumable (%s): skipped", path, problem)
    return None


def checkpoint_problem(path: Path) -> str | None:
    """None if the checkpoint is whole: trainer_state.json (written last) parses and every safetensors file's
    header and data length are intact; else what is wrong."""
    import json

    from safetensors import safe_open

    try:
        json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"trainer_state.json unreadable: {exc}"
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        return "no weights"
    for weight_file in weights:
        try:
            with safe_open(str(weight_file), framework="pt") as tensors:
                for name in tensors.keys():
                    tensors.get_slice(name)
        except Exception as exc:  # safetensors raises its own error types for torn headers and short files
            return f"{weight_file.name} unreadable: {exc}"
    for state_file in sorted(path.glob("*.pt")) + sorted(path.glob("*.pth")):
        try:  # torch.save writes a zip archive: a cut file loses its central directory at the end
            with zipfile.ZipFile(state_file) as archive:
                archive.namelist()
        except (OSError, zipfile.BadZipFile) as exc:
            return f"{state_file.name} unreadable: {exc}"
    return None


def checkpoint_step(checkpoint: str | None) -> int:
    return int(Path(checkpoint).name.rsplit("-", 1)[1]) if checkpoint else 0


def peak_memory_mb() -> float:
    """Peak GPU memory allocated on CUDA, else the process's peak resident set size."""
    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
