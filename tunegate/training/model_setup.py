"""The model a run trains and the Trainer's arguments: the base (safetensors only; 4-bit or 8-bit bitsandbytes on
CUDA), wrapped with LoRA or a virtual-token method unless the method is full fine-tuning, and the
TrainingArguments (or TRL's DPOConfig) of the recipe, plan and fast path."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunegate.config.search_space import VIRTUAL_TOKEN_METHODS
from tunegate.config.train import ModelConfig, TrainConfig
from tunegate.core.errors import InputError
from tunegate.lm.model_loading import load_causal_lm, load_tokenizer
from tunegate.training.budget import TrainingPlan
from tunegate.training.fast_path import FastPath

if TYPE_CHECKING:
    pass


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
    return get_peft_model(model, lora_config(train_config, model))


def lora_config(train_config: TrainConfig, model: Any) -> Any:
    """PEFT's LoRA config of the recipe for `model` (alpha defaults to 2 x rank; train.lora_top_layers: the last
    blocks only)."""
    from peft import LoraConfig

    layers = top_layer_indices(model, train_config.lora_top_layers)
    targets = train_config.target_modules
    if layers is not None and isinstance(targets, str):  # PEFT takes layers_to_transform with module names only
        if targets != "all-linear":
            raise InputError(
                f"train.lora_top_layers needs train.target_modules as all-linear or a list of names, not {targets!r}"
            )
        targets = linear_module_names(model)
    return LoraConfig(
        r=train_config.lora_r,
        lora_alpha=train_config.lora_alpha or 2 * train_config.lora_r,
        lora_dropout=train_config.lora_dropout,
        target_modules=targets,
        layers_to_transform=layers,
        task_type="CAUSAL_LM",
    )


def top_layer_indices(model: Any, top: int | None) -> list[int] | None:
    """Indices of the last `top` transformer blocks (None: every block)."""
    if top is None:
        return None
    count = model.config.get_text_config().num_hidden_layers
    if top > count:
        raise InputError(f"train.lora_top_layers={top}: the base has {count} transformer blocks; expected 1..{count}")
    return list(range(count - top, count))


def linear_module_names(model: Any) -> list[str]:
    """What all-linear names: the last name of every linear module but the output layer (q_proj, up_proj, ...; GPT-2's
    Conv1D projections count as linear, as in PEFT)."""
    import torch
    from transformers.pytorch_utils import Conv1D

    output = model.get_output_embeddings()
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear | Conv1D) and module is not output
        }
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

    from tunegate.training.callbacks import SELECTION

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
