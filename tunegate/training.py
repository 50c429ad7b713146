"""The training engine: fine-tune the base model (LoRA, QLoRA or full) on train rows, keeping the best checkpoint by
the sweep objective (the task metric of greedy generations, or val loss) measured at the plan's rung steps.

Writes `<out_dir>/checkpoints/checkpoint-<step>/` every `save_steps` (a run killed mid-training and started again
resumes from the last intact one) and `<out_dir>/adapter/` (the adapter or full weights, the tokenizer and
`prompt_format.json`). Built on transformers' Trainer: dynamic padding to the longest sequence of a batch,
length-grouped batches, loss on target tokens only, gradient accumulation, cosine schedule with warm-up, clipping,
weight decay, bf16/fp16 where the hardware has it, and an optional gradient-checkpointing switch. The stages that
train (`tasks/sweep.py`'s trials, `tasks/train.py`'s candidate) call `run_training`.
"""

from __future__ import annotations

import json
import math
import resource
import sys
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel

from tunegate.budget import TrainingPlan, final_plan, trial_plan
from tunegate.config import ModelConfig, PipelineConfig, TrainConfig
from tunegate.errors import InputError
from tunegate.fast_path import FastPath, fast_path
from tunegate.fingerprint import fingerprint_value
from tunegate.health import HealthWatch
from tunegate.model_loading import load_causal_lm, load_tokenizer
from tunegate.prompting import PromptFormat
from tunegate.refs import TableRef, write_text_atomic
from tunegate.search_space import VIRTUAL_TOKEN_METHODS, typed_params
from tunegate.sft_data import IGNORE_INDEX, encode_rows
from tunegate.stage_results import SplitResult, TrainResult
from tunegate.stages import run_logger, stage_directory

if TYPE_CHECKING:
    from tunegate.callbacks import EvaluationHook

ADAPTER_DIR, CHECKPOINT_DIR = "adapter", "checkpoints"


class TrainingJob(BaseModel):
    """What one training run reads: the rows (by reference), the base model, the recipe, the budget, and the home
    its directory goes under. The sweep's trials share one job (each with its own params); the candidate has its
    own (a refit's budget can differ)."""

    train: TableRef
    val: TableRef
    model: ModelConfig
    recipe: TrainConfig
    plan: TrainingPlan
    home: str

    @classmethod
    def for_trials(cls, config: PipelineConfig, split: SplitResult) -> TrainingJob:
        """Trials train in one process each (`train.processes` is the refit's)."""
        job = cls.of(config, split, trial_plan(config, split.train.rows))
        one_process = job.recipe.model_copy(update={"processes": 1, "sharding": "ddp"})
        return job.model_copy(update={"recipe": one_process})

    @classmethod
    def for_candidate(cls, config: PipelineConfig, split: SplitResult) -> TrainingJob:
        return cls.of(config, split, final_plan(config, split.train.rows, split.val.rows))

    @classmethod
    def of(cls, config: PipelineConfig, split: SplitResult, plan: TrainingPlan) -> TrainingJob:
        return cls(
            train=split.train,
            val=split.val,
            model=config.model,
            recipe=config.train,
            plan=plan,
            home=str(config.home_path()),
        )

    def with_params(self, params: dict[str, float | int]) -> TrainingJob:
        """The same job with searched params (LoRA rank, learning rate) set on the recipe."""
        return self.model_copy(update={"recipe": self.recipe.model_copy(update=typed_params(params))})

    def directory(self, kind: str, module_file: str, *extra_fingerprints: str) -> Path:
        """The run's directory under home, keyed on the code, `extra_fingerprints`, the rows, the model, the recipe
        and the plan (`stage_directory`)."""
        recipe = fingerprint_value([self.model, self.recipe, self.plan])
        rows = (self.train.fingerprint, self.val.fingerprint)
        return stage_directory(self.home, kind, module_file, *extra_fingerprints, *rows, recipe)

    def run(
        self,
        out_dir: Path,
        on_evaluate: EvaluationHook | None = None,
        callbacks: list[Any] | None = None,
        train_on_val_too: bool = False,
    ) -> TrainResult:
        """Train this job into `out_dir` (`run_training`); `train_on_val_too` trains on train + val (a refit that
        no longer holds val out; val is still what it reports on)."""
        train_rows, val_rows = self.train.read(), self.val.read()
        if train_on_val_too:
            train_rows = pd.concat([train_rows, val_rows], ignore_index=True)
        return run_training(train_rows, val_rows, self.model, self.recipe, self.plan, out_dir, on_evaluate, callbacks)

    def run_in_processes(self, out_dir: Path, tracking: tuple[str, str] | None, train_on_val_too: bool) -> TrainResult:
        """Train this job as `recipe.processes` processes (torchrun, DDP); rank 0 logs to `tracking` (uri, run id)
        and saves. The hooks of `run` cannot cross into other processes: metrics go to MLflow directly."""
        import torch

        from tunegate.distributed import DistributedRun, run_in_processes

        if self.recipe.sharding == "fsdp" and not torch.cuda.is_available():
            raise InputError(
                "train.sharding=fsdp needs CUDA GPUs; on CPU transformers trains the processes as DDP "
                "(use train.sharding: ddp)"
            )
        uri, run_id = tracking or (None, None)
        spec = DistributedRun(
            job=self,
            out_dir=str(out_dir),
            train_on_val_too=train_on_val_too,
            mlflow_uri=uri,
            mlflow_run_id=run_id,
        )
        return run_in_processes(spec, self.recipe.processes)


def run_training(
    train_rows: pd.DataFrame,
    val_rows: pd.DataFrame,
    model_config: ModelConfig,
    train_config: TrainConfig,
    plan: TrainingPlan,
    out_dir: Path,
    on_evaluate: EvaluationHook | None = None,
    callbacks: list[Any] | None = None,
) -> TrainResult:
    """Train from the base model (or the last checkpoint in out_dir) on `plan`; keep the best checkpoint by the
    plan's objective (or the last one) and save it."""
    if train_config.objective == "dpo":
        from tunegate.preference import run_dpo_training

        return run_dpo_training(train_rows, val_rows, model_config, train_config, plan, out_dir, on_evaluate, callbacks)
    from tunegate.callbacks import TaskMetricTrainer

    tokenizer = load_tokenizer_for_training(model_config)
    prompt_format = PromptFormat.from_tokenizer(tokenizer, model_config.system_prompt)
    train_encoded = encode_rows(train_rows, tokenizer, prompt_format, model_config.max_tokens)
    val_encoded = encode_rows(
        val_rows.head(train_config.max_eval_rows), tokenizer, prompt_format, model_config.max_tokens
    )
    if not train_encoded.input_ids or not val_encoded.input_ids:
        raise InputError(
            f"no train or val rows fit model.max_tokens={model_config.max_tokens} "
            f"({train_encoded.overlength_rows} train rows were longer, the longest {train_encoded.longest_left_out})"
        )
    model = trainable_model(model_config, train_config)
    run = RunWatch.of(on_evaluate, plan, train_config, out_dir)
    trainer = TaskMetricTrainer(
        model=model,
        args=training_arguments(train_config, plan, run.checkpoints, run.fast),
        train_dataset=train_encoded.to_dataset(),
        eval_dataset=val_encoded.to_dataset(),
        data_collator=sft_collator(tokenizer, run.fast.packing),
        processing_class=tokenizer,
        callbacks=run.callbacks(callbacks),
        objective_rows=objective_rows(val_rows, plan) if plan.objective == "task_metric" else None,
        prompt_format=prompt_format,
        metric=plan.metric,
        labels=plan.labels,
        label_scoring=plan.label_scoring,
    )
    if run.last_checkpoint is None:  # a resumed run's weights are not the base's: no baseline to compare with
        run.health.initial_val_loss = trainer.initial_val_loss()
    return run.trained(trainer, prompt_format, train_encoded.overlength_rows + val_encoded.overlength_rows)


def sft_collator(tokenizer: Any, packing: bool) -> Any:
    """Batches of encoded rows: packed into one row (`PackedBatches`), or padded to the batch's longest with the
    padding masked out of the loss."""
    from transformers import DataCollatorForSeq2Seq

    from tunegate.callbacks import PackedBatches

    if packing:
        return PackedBatches()
    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)


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
        from tunegate.callbacks import EvaluationHistory, Throughput

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
            health=HealthWatch(recipe.health, plan.first_rung, removable_loss=removable_loss),
            fast=fast,
        )

    @property
    def checkpoints(self) -> Path:
        return self.out_dir / CHECKPOINT_DIR

    def callbacks(self, extra: list[Any] | None) -> list[Any]:
        """Evaluations at the rungs, health, history, throughput, early stopping, then the caller's."""
        from transformers import EarlyStoppingCallback

        from tunegate.callbacks import EvaluateAt, TrainingHealthCallback

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


def objective_rows(val_rows: pd.DataFrame, plan: TrainingPlan) -> pd.DataFrame:
    """The validation rows the task metric is measured on: labelled rows for a label task, the first N."""
    chosen = val_rows[val_rows["labelled"].astype(bool)] if plan.labels and "labelled" in val_rows else val_rows
    return chosen.head(plan.objective_rows).reset_index(drop=True)


def kept_step(trainer: Any, plan: TrainingPlan) -> int:
    """The step whose weights were saved: the best checkpoint's, or the last step's."""
    best = trainer.state.best_global_step if plan.keep_best_checkpoint else None
    return int(best) if best else trainer.state.global_step


def value_at(history: list[tuple[int, float]], step: int) -> float:
    """The value measured at `step`, else the last one measured, else NaN (a run stopped before any evaluation)."""
    at_step = [value for s, value in history if s == step]
    return at_step[-1] if at_step else (history[-1][1] if history else math.nan)


def load_tokenizer_for_training(model_config: ModelConfig) -> Any:
    tokenizer = load_tokenizer(model_config.base, model_config.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # Llama/Mistral ship no pad token; pad positions are masked
    return tokenizer


def trainable_model(model_config: ModelConfig, train_config: TrainConfig) -> Any:
    """The base model, wrapped with LoRA adapters unless the method is full fine-tuning."""
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training

    torch.manual_seed(train_config.seed)  # adapter initialisation is part of the run's recipe
    model = load_base_model(model_config, train_config)
    if train_config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    if train_config.method == "full":
        return model
    if train_config.method in VIRTUAL_TOKEN_METHODS:
        return get_peft_model(model, virtual_token_config(model_config, train_config))
    if train_config.method == "qlora" or model_config.load_in_8bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=train_config.gradient_checkpointing)
    return get_peft_model(model, lora_config(train_config))


def lora_config(train_config: TrainConfig) -> Any:
    """PEFT's LoRA config of the recipe (alpha defaults to 2 x rank)."""
    from peft import LoraConfig

    return LoraConfig(
        r=train_config.lora_r,
        lora_alpha=train_config.lora_alpha or 2 * train_config.lora_r,
        lora_dropout=train_config.lora_dropout,
        target_modules=train_config.target_modules,
        task_type="CAUSAL_LM",
    )


def virtual_token_config(model_config: ModelConfig, train_config: TrainConfig) -> Any:
    """PEFT's config for a virtual-token method: trained input embeddings (prompt tuning, from a text or random),
    per-layer key/value prefixes (prefix tuning), or embeddings produced by a small MLP (P-tuning)."""
    from peft import PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, PromptTuningInit

    tokens = train_config.num_virtual_tokens
    if train_config.method == "prefix_tuning":
        return PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=tokens)
    if train_config.method == "p_tuning":
        return PromptEncoderConfig(
            task_type="CAUSAL_LM", num_virtual_tokens=tokens, encoder_hidden_size=train_config.encoder_hidden_size
        )
    init_text = train_config.prompt_init_text
    return PromptTuningConfig(
        task_type="CAUSAL_LM",
        num_virtual_tokens=tokens,
        prompt_tuning_init=PromptTuningInit.TEXT if init_text else PromptTuningInit.RANDOM,
        prompt_tuning_init_text=init_text,
        tokenizer_name_or_path=model_config.base if init_text else None,  # a local directory works offline
    )


def load_base_model(model_config: ModelConfig, train_config: TrainConfig) -> Any:
    """Weights from safetensors only; 4-bit (bitsandbytes NF4) for qlora, 8-bit (LLM.int8) with
    model.load_in_8bit: both need CUDA."""
    options: dict[str, Any] = {}
    if train_config.method == "qlora":
        options["quantization_config"] = bitsandbytes_config("train.method=qlora", load_in_4bit=True)
    elif model_config.load_in_8bit:
        options["quantization_config"] = bitsandbytes_config("model.load_in_8bit", load_in_8bit=True)
    return load_causal_lm(model_config.base, model_config.trust_remote_code, **options)


def bitsandbytes_config(setting: str, load_in_4bit: bool = False, load_in_8bit: bool = False) -> Any:
    """transformers' BitsAndBytesConfig for 4-bit NF4 (bf16 compute) or 8-bit weights; a one-line InputError where
    there is no CUDA GPU or no bitsandbytes (its kernels are CUDA-only here)."""
    import importlib.util

    import torch

    bits = "4-bit" if load_in_4bit else "8-bit"
    if not torch.cuda.is_available():
        raise InputError(f"{setting} needs a CUDA GPU for {bits} bitsandbytes weights; none here (use lora)")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise InputError(f"{setting} needs the bitsandbytes package: pip install bitsandbytes")
    from transformers import BitsAndBytesConfig

    if load_in_4bit:
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
    return BitsAndBytesConfig(load_in_8bit=load_in_8bit)


def training_arguments(
    train_config: TrainConfig,
    plan: TrainingPlan,
    checkpoints: Path,
    fast: FastPath,
    arguments_class: type | None = None,
    **overrides: Any,
) -> Any:
    """The Trainer's arguments for the recipe, plan and fast path (`arguments_class`: TrainingArguments, or a
    subclass such as TRL's DPOConfig, with `overrides` on top)."""
    import torch
    from transformers import TrainingArguments

    from tunegate.callbacks import SELECTION

    # Evaluations and checkpoints are driven by EvaluateAt (the rung steps), so the interval-based ones are set
    # past the end of the run: the two strategies must match for load_best_model_at_end.
    never = plan.max_steps + 1
    settings: dict[str, Any] = dict(
        output_dir=str(checkpoints),
        max_steps=plan.max_steps,
        per_device_train_batch_size=train_config.batch_size,
        per_device_eval_batch_size=train_config.batch_size,
        gradient_accumulation_steps=train_config.gradient_accumulation_steps,
        learning_rate=train_config.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=train_config.warmup_ratio,  # a float below 1 is a ratio of max_steps in transformers 5
        weight_decay=train_config.weight_decay,
        max_grad_norm=train_config.max_grad_norm,
        eval_strategy="steps",
        eval_steps=never,
        save_strategy="steps",
        save_steps=never,
        save_total_limit=2,
        load_best_model_at_end=plan.keep_best_checkpoint,
        metric_for_best_model=SELECTION,  # the objective, ties broken by val loss (TaskMetricTrainer)
        greater_is_better=True,
        train_sampling_strategy="group_by_length",
        # A packed batch has no padding (and no attention mask to count by): every token is real.
        include_num_input_tokens_seen="all" if fast.packing else "non_padding",
        logging_steps=max(1, min(10, plan.first_rung // 2)),
        report_to="none",
        seed=train_config.seed,
        data_seed=train_config.seed,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=not sys.stderr.isatty(),
        bf16=fast.precision == "bf16",
        fp16=fast.precision == "fp16",
        use_liger_kernel=fast.kernels,
        torch_compile=fast.compile,
        **sharding_arguments(train_config),
    )
    return (arguments_class or TrainingArguments)(**{**settings, **overrides})


def sharding_arguments(train_config: TrainConfig) -> dict[str, Any]:
    """FSDP for a multi-process run that asks for it: full sharding, wrapped at the model's own no-split layers
    (its decoder layers); `use_orig_params` so PEFT's frozen and trainable parameters can share a flat shard."""
    if train_config.sharding != "fsdp" or train_config.processes < 2:
        return {}
    return {"fsdp": "full_shard auto_wrap", "fsdp_config": {"use_orig_params": True}}


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


def log_metrics(client: Any, run_id: str, metrics: dict[str, float], step: int) -> None:
    """Log finite metrics (MLflow stores NaN, but the compare view cannot plot it)."""
    for name, value in metrics.items():
        if math.isfinite(value):
            client.log_metric(run_id, name, float(value), step=step)


def run_summary_metrics(result: TrainResult) -> dict[str, float]:
    """The end-of-run numbers every training run logs, with the same names in trials and refits."""
    return {
        "tokens_per_second": result.tokens_per_second,
        "peak_memory_mb": result.peak_memory_mb,
        "best_val_loss": result.best_val_loss,
        f"best_{result.objective}": result.best_objective,
        "overlength_rows": float(result.overlength_rows),
        "healthy": float(result.health.healthy),
        "grad_spikes": float(result.health.grad_spikes),
    }
