"""The `model:` section (the base and how it is loaded and prompted) and the `train:` section (method, recipe,
budget, fast path, health checks)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tunegate.config.base import StrictModel

# PEFT's virtual-token methods (prompt/prefix/P-tuning): searched by their number of virtual tokens, not a rank.
VIRTUAL_TOKEN_METHODS = ("prompt_tuning", "prefix_tuning", "p_tuning")


class ModelConfig(StrictModel):
    base: str = Field(
        default="smollm2-135m-instruct",
        description="Base causal LM: a catalogue name (`tunegate base list`; fetched once by `tunegate base get "
        "NAME`), a `.gguf` file (converted once under home/bases/), a local directory, a Hub id (Qwen, Llama, "
        "Mistral, Gemma, ...), or a registered version (`models:/<name>@<alias>` or `models:/<name>/<version>`, e.g. "
        "the SFT champion a DPO run starts from), merged into whole weights under home/bases/ before anything trains.",
    )
    trust_remote_code: bool = Field(
        default=False, description="Allow the model's own Python code to run. Off unless you trust the source."
    )
    max_tokens: int = Field(
        default=512, ge=8, description="Longest prompt + target in tokens; longer rows are left out and counted."
    )
    system_prompt: str | None = Field(
        default=None,
        description="System message of every conversation that has none, identical in training, evaluation and "
        'serving. None keeps the chat template\'s own default (SmolLM2 injects a 17-token one into every row); "" '
        "an empty system turn; with the plain template (no chat template) a non-empty one is the prompt's first "
        "paragraph.",
    )
    load_in_8bit: bool = Field(
        default=False,
        description="Train LoRA (or a virtual-token method) on the base loaded in 8 bits (bitsandbytes LLM.int8, "
        "about half the memory of 16-bit weights); needs a CUDA GPU. qlora loads 4 bits instead.",
    )


class HealthConfig(StrictModel):
    min_loss_drop: float = Field(
        default=0.05,
        ge=0.0,
        lt=1.0,
        description="At the first rung the validation loss must have fallen by this fraction of its value "
        "before training; less is flagged `loss_not_falling`.",
    )
    grad_spike_factor: float = Field(
        default=5.0, gt=1.0, description="A logged gradient norm above this multiple of the median so far is a spike."
    )
    max_grad_spikes: int = Field(
        default=3,
        ge=0,
        description="More spikes than this in one run are flagged `grad_norm_spikes` when the next validation loss "
        "is worse than its best so far (spikes the val loss shrugs off are counted, not flagged).",
    )
    max_loss_rise: float = Field(
        default=0.5,
        gt=0.0,
        description="A validation loss above its value before training by more than this fraction (of what "
        "training can remove) is flagged `loss_diverging` at once, whatever the step: a diverging rate is stopped "
        "without waiting for judged_after_steps.",
    )
    judged_after_steps: int = Field(
        default=10,
        ge=1,
        description="The loss-falls and gradient-spike checks wait for this many steps (or the run's end, when it "
        "is shorter): a 20-step smoke run of the demo config had its first rung at step 3, inside warm-up, and all 4 "
        "trials were refused (-1.9% loss, or norms 5x a median of 3 warm-up steps). Non-finite losses are flagged "
        "at once.",
    )


class TrainConfig(StrictModel):
    objective: Literal["sft", "dpo"] = Field(
        default="sft",
        description="sft: learn the completions (supervised fine-tuning); dpo: learn to prefer `chosen` over "
        "`rejected` on preference rows (TRL's DPOTrainer; the reference is the base: LoRA's adapters disabled, or a "
        "frozen copy for full). DPO is usually run after SFT, from the SFT champion (model.base: "
        "models:/<name>@champion).",
    )
    dpo_beta: float = Field(
        default=0.1,
        gt=0.0,
        description="DPO's beta: how far the policy may move from the reference (the implicit reward is beta x the "
        "log-probability ratio); 0.1 is the DPO paper's and TRL's default.",
    )
    dpo_sft_weight: float = Field(
        default=1.0,
        ge=0.0,
        description="Weight of a negative log-likelihood term on the chosen reply added to the DPO loss (RPO, Pang et "
        "al. 2024: weight 1; TRL's loss_type [sigmoid, sft]). Plain DPO (0) can win every pair by pushing both "
        "replies down while the model's own answers degrade; the term keeps the chosen reply likely.",
    )
    method: Literal["lora", "qlora", "full", "prompt_tuning", "prefix_tuning", "p_tuning"] = Field(
        default="lora",
        description="lora: adapters on a frozen base; qlora: the same on a 4-bit base (CUDA); full: every weight; "
        "prompt_tuning / prefix_tuning / p_tuning: PEFT's virtual-token methods (trained embeddings prepended to the "
        "input; per-layer key/value prefixes; embeddings from a small prompt encoder).",
    )
    lora_r: int = Field(default=8, ge=1, description="LoRA rank (the sweep tunes it).")
    num_virtual_tokens: int = Field(
        default=16, ge=1, description="Virtual tokens of prompt/prefix/p-tuning (the sweep tunes it for them)."
    )
    prompt_init_text: str | None = Field(
        default=None,
        description="prompt_tuning: initialise the virtual tokens from this text's embeddings (e.g. 'Classify the "
        "support ticket:'); None: random initialisation.",
    )
    encoder_hidden_size: int = Field(default=128, ge=1, description="p_tuning: hidden size of the prompt encoder.")
    lora_alpha: int | None = Field(default=None, ge=1, description="LoRA scaling numerator; None means 2 × rank.")
    lora_dropout: float = Field(default=0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: str | list[str] = Field(
        default="all-linear",
        description="Modules that get adapters: all-linear (every linear but the output), or names.",
    )
    lora_top_layers: int | None = Field(
        default=None,
        ge=1,
        description="LoRA on the last N transformer blocks only (PEFT's layers_to_transform), the other blocks frozen "
        "as they are: the backward pass stops at the lowest adapted block. SmolLM2-135M (30 blocks), 8 x 120 tokens, "
        "2 CPU threads: every block 8.2 s a step, the top 15 5.2 s (1.6x). It learns less and forgets less: the demo "
        "with the top 15 scored 0.935 on test instead of 0.990, at a drift of 0.63 nats/token instead of 1.59. None: "
        "every block.",
    )
    learning_rate: float = Field(default=2e-4, gt=0.0, description="Peak learning rate (the sweep tunes it).")
    epochs: float = Field(
        default=2.0,
        gt=0.0,
        description="Passes over the train split: the final budget in optimizer steps is epochs x train rows / "
        "(batch_size x gradient_accumulation_steps), so one config carries between datasets of different sizes.",
    )
    max_steps: int | None = Field(
        default=None, ge=1, description="Optional cap on the final budget in optimizer steps; None: epochs decide."
    )
    batch_size: int = Field(default=16, ge=1, description="Sequences per micro-batch.")
    gradient_accumulation_steps: int = Field(default=1, ge=1, description="Micro-batches per optimizer step.")
    warmup_ratio: float = Field(default=0.05, ge=0.0, lt=1.0, description="Fraction of steps of linear warm-up.")
    weight_decay: float = Field(default=0.0, ge=0.0, description="AdamW weight decay.")
    max_grad_norm: float = Field(default=1.0, gt=0.0, description="Gradient clipping norm.")
    eval_steps: int | None = Field(
        default=None,
        ge=1,
        description="Steps between extra evaluations; None: evaluate only at the sweep's rungs (fractions of the "
        "budget, the last one at the full budget), where the objective and val loss are measured.",
    )
    save_steps: int = Field(
        default=25, ge=1, description="Steps between checkpoints; a killed run resumes from the last one."
    )
    early_stopping_patience: int = Field(
        default=3, ge=1, description="Evaluations without a better objective before training stops."
    )
    max_eval_rows: int = Field(default=256, ge=1, description="Validation rows used for each evaluation.")
    gradient_checkpointing: bool = Field(default=False, description="Recompute activations: less memory, ~30% slower.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        default="auto", description="auto: bf16 where the GPU supports it, else fp16 on GPU, fp32 on CPU."
    )
    packing: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Padding-free packing: each batch's sequences concatenated into one row with per-sequence position "
        "ids (transformers' DataCollatorWithFlattening), attention never crossing sequences (FlashAttention's varlen "
        "path or a block-diagonal mask) and the loss on target tokens only. auto: on with a CUDA GPU; off on CPU, "
        "where the mask over the whole row costs more than the padding saved (tokens/s: `make bench`).",
    )
    kernels: Literal["auto", "none"] = Field(
        default="auto",
        description="auto: Liger's fused Triton kernels (RMSNorm, RoPE, SwiGLU, fused linear cross-entropy; the "
        "Trainer's use_liger_kernel) on a CUDA GPU when liger-kernel is installed; none: the model's own modules.",
    )
    compile: bool = Field(
        default=False,
        description="torch.compile the model (the Trainer's torch_compile) on a CUDA GPU; ignored on CPU. Off by "
        "default: batch shapes change every step, and compiling pays off only on long runs.",
    )
    seed: int = Field(default=0, ge=0, description="Seed of initialisation and data order.")
    processes: int = Field(
        default=1,
        ge=1,
        description="Processes a refit trains with (torchrun: DDP over gloo on CPU, NCCL on GPUs; rank 0 logs and "
        "saves); batch_size is per process, so the global batch is processes x batch_size x "
        "gradient_accumulation_steps. Trials train in one process each (they run side by side instead).",
    )
    sharding: Literal["ddp", "fsdp"] = Field(
        default="ddp",
        description="With processes > 1: ddp keeps a full model copy per process; fsdp shards parameters, gradients "
        "and optimizer state across GPUs (transformers' FSDP, auto-wrapped by the model's layers) for models that "
        "do not fit one device. fsdp needs CUDA: on CPU transformers runs the processes as DDP.",
    )
    health: HealthConfig = Field(
        default_factory=HealthConfig, description="When a run counts as unhealthy (flagged, never promoted)."
    )
