"""Train: fine-tune the base model (LoRA, QLoRA or full) on the train split, early-stopped on val loss.

Reads the split Parquet files; writes `<out_dir>/checkpoints/checkpoint-<step>/` every `save_steps`
(a run killed mid-training and started again resumes from the last one) and `<out_dir>/adapter/` (the
adapter or full weights, the tokenizer and `prompt_format.json`). Built on transformers' Trainer:
dynamic padding to the longest sequence of a batch, length-grouped batches, loss on target tokens only,
gradient accumulation, cosine schedule with warm-up, clipping, weight decay, bf16/fp16 where the hardware
has it, and an optional gradient-checkpointing switch.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from prefect import task
from pydantic import BaseModel

from tunegate.caching import stage_cache_policy
from tunegate.config import ModelConfig, TrainConfig
from tunegate.errors import InputError
from tunegate.fingerprint import combine, fingerprint_directory, fingerprint_value
from tunegate.model_loading import load_causal_lm, load_tokenizer
from tunegate.prompting import PromptFormat
from tunegate.refs import TableRef
from tunegate.sft_data import IGNORE_INDEX, encode_rows
from tunegate.tracking import mlflow_client, start_child_run

if TYPE_CHECKING:
    from tunegate.callbacks import EvaluationHook

ADAPTER_DIR, CHECKPOINT_DIR = "adapter", "checkpoints"


class TrainResult(BaseModel):
    """What a training run produced and measured."""

    adapter_dir: str
    method: str
    steps: int
    best_val_loss: float
    val_loss_history: list[tuple[int, float]]
    train_tokens_seen: int
    tokens_per_second: float
    peak_memory_mb: float
    resumed_from_step: int
    overlength_rows: int
    stopped_early: bool


def run_training(
    train_rows: pd.DataFrame,
    val_rows: pd.DataFrame,
    model_config: ModelConfig,
    train_config: TrainConfig,
    out_dir: Path,
    on_evaluate: EvaluationHook | None = None,
    callbacks: list[Any] | None = None,
) -> TrainResult:
    """Train from the base model (or the last checkpoint in out_dir) and save the best weights."""
    from transformers import DataCollatorForSeq2Seq, EarlyStoppingCallback, PrinterCallback, Trainer

    from tunegate.callbacks import EvaluationHistory, Throughput

    tokenizer = load_tokenizer_for_training(model_config)
    prompt_format = PromptFormat.from_tokenizer(tokenizer)
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
    checkpoints = out_dir / CHECKPOINT_DIR
    last_checkpoint = last_complete_checkpoint(checkpoints)
    history = EvaluationHistory(on_evaluate)
    throughput = Throughput()
    trainer = Trainer(
        model=model,
        args=training_arguments(train_config, checkpoints),
        train_dataset=train_encoded.to_dataset(),
        eval_dataset=val_encoded.to_dataset(),
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX),
        processing_class=tokenizer,
        callbacks=[
            history,
            throughput,
            EarlyStoppingCallback(train_config.early_stopping_patience),
            *(callbacks or []),
        ],
    )
    trainer.remove_callback(PrinterCallback)  # without a terminal it prints every log dict; tqdm shows progress
    trainer.train(resume_from_checkpoint=last_checkpoint)
    adapter_dir = save_trained(trainer, tokenizer, prompt_format, out_dir / ADAPTER_DIR)
    return TrainResult(
        adapter_dir=str(adapter_dir),
        method=train_config.method,
        steps=trainer.state.global_step,
        best_val_loss=float(trainer.state.best_metric if trainer.state.best_metric is not None else history.best()),
        val_loss_history=history.losses,
        train_tokens_seen=throughput.tokens,
        tokens_per_second=throughput.tokens_per_second(),
        peak_memory_mb=peak_memory_mb(),
        resumed_from_step=checkpoint_step(last_checkpoint),
        overlength_rows=train_encoded.overlength_rows + val_encoded.overlength_rows,
        stopped_early=trainer.state.global_step < train_config.max_steps,
    )


def load_tokenizer_for_training(model_config: ModelConfig) -> Any:
    tokenizer = load_tokenizer(model_config.base, model_config.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # Llama/Mistral ship no pad token; pad positions are masked
    return tokenizer


def trainable_model(model_config: ModelConfig, train_config: TrainConfig) -> Any:
    """The base model, wrapped with LoRA adapters unless the method is full fine-tuning."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    torch.manual_seed(train_config.seed)  # adapter initialisation is part of the run's recipe
    model = load_base_model(model_config, train_config)
    if train_config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    if train_config.method == "full":
        return model
    if train_config.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=train_config.gradient_checkpointing)
    lora = LoraConfig(
        r=train_config.lora_r,
        lora_alpha=train_config.lora_alpha or 2 * train_config.lora_r,
        lora_dropout=train_config.lora_dropout,
        target_modules=train_config.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def load_base_model(model_config: ModelConfig, train_config: TrainConfig) -> Any:
    """Weights from safetensors only; 4-bit (bitsandbytes) for qlora, which needs CUDA."""
    import torch

    options: dict[str, Any] = {}
    if train_config.method == "qlora":
        if not torch.cuda.is_available():
            raise InputError("train.method=qlora needs a CUDA GPU for 4-bit bitsandbytes; none here (use lora)")
        from transformers import BitsAndBytesConfig

        options["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
    return load_causal_lm(model_config.base, model_config.trust_remote_code, **options)


def mixed_precision(precision: str) -> dict[str, bool]:
    """bf16 where the GPU supports it, fp16 on other GPUs, fp32 on CPU (CPU autocast gains little here)."""
    import torch

    if precision == "auto":
        if not torch.cuda.is_available():
            precision = "fp32"
        else:
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def training_arguments(train_config: TrainConfig, checkpoints: Path) -> Any:
    import torch
    from transformers import TrainingArguments

    # load_best_model_at_end needs checkpoints on evaluation steps: round save_steps up to a multiple.
    save_steps = -(-train_config.save_steps // train_config.eval_steps) * train_config.eval_steps
    return TrainingArguments(
        output_dir=str(checkpoints),
        max_steps=train_config.max_steps,
        per_device_train_batch_size=train_config.batch_size,
        per_device_eval_batch_size=train_config.batch_size,
        gradient_accumulation_steps=train_config.gradient_accumulation_steps,
        learning_rate=train_config.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=train_config.warmup_ratio,  # a float below 1 is a ratio of max_steps in transformers 5
        weight_decay=train_config.weight_decay,
        max_grad_norm=train_config.max_grad_norm,
        eval_strategy="steps",
        eval_steps=train_config.eval_steps,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        train_sampling_strategy="group_by_length",
        include_num_input_tokens_seen="non_padding",
        logging_steps=max(1, min(10, train_config.eval_steps)),
        report_to="none",
        seed=train_config.seed,
        data_seed=train_config.seed,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=not sys.stderr.isatty(),
        **mixed_precision(train_config.precision),
    )


def save_trained(trainer: Any, tokenizer: Any, prompt_format: PromptFormat, adapter_dir: Path) -> Path:
    """The best weights (adapter only for LoRA), the tokenizer and the prompt format, in one directory."""
    adapter_dir.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(adapter_dir, safe_serialization=True)
    tokenizer.save_pretrained(adapter_dir)
    prompt_format.save(adapter_dir)
    return adapter_dir


def last_complete_checkpoint(checkpoints: Path) -> str | None:
    """The newest checkpoint whose trainer_state.json (written last) exists: a run killed while saving
    leaves a partial directory that must not be resumed from."""
    complete = [path for path in checkpoints.glob("checkpoint-*") if (path / "trainer_state.json").is_file()]
    return str(max(complete, key=lambda path: int(path.name.rsplit("-", 1)[1]))) if complete else None


def checkpoint_step(checkpoint: str | None) -> int:
    return int(Path(checkpoint).name.rsplit("-", 1)[1]) if checkpoint else 0


def peak_memory_mb() -> float:
    """Peak GPU memory allocated on CUDA, else the process's peak resident set size."""
    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class TrainedModel(BaseModel):
    """The final run's result and the content fingerprint of its saved weights."""

    result: TrainResult
    adapter_fingerprint: str


@task(cache_policy=stage_cache_policy(excluded=("tracking",)))
def train_final_model(
    train: TableRef, val: TableRef, model: ModelConfig, train_config: TrainConfig, home: str, tracking: dict[str, str]
) -> TrainedModel:
    """The full-budget run with the sweep's best params, as the nested MLflow run `final-training`."""
    key = combine(train.fingerprint, val.fingerprint, fingerprint_value([model, train_config]))[:16]
    from tunegate.callbacks import MlflowMetrics, TrainingProgress

    client = mlflow_client(tracking["uri"])
    run_name = f"final-training r={train_config.lora_r} lr={train_config.learning_rate:.1e}"
    run_id = start_child_run(client, tracking["experiment_id"], tracking.get("parent_run_id"), run_name)
    for name in ("lora_r", "learning_rate", "method", "max_steps", "batch_size", "gradient_accumulation_steps"):
        client.log_param(run_id, name, getattr(train_config, name))
    result = run_training(
        train.read(),
        val.read(),
        model,
        train_config,
        Path(home) / "train" / key,
        on_evaluate=lambda step, loss: client.log_metric(run_id, "val_loss", loss, step=step),
        callbacks=[MlflowMetrics(client, run_id), TrainingProgress(train_config.max_steps)],
    )
    for name in ("tokens_per_second", "peak_memory_mb", "best_val_loss", "overlength_rows"):
        client.log_metric(run_id, name, float(getattr(result, name)))
    client.set_terminated(run_id)
    return TrainedModel(result=result, adapter_fingerprint=fingerprint_directory(result.adapter_dir))
