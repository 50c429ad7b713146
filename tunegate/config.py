"""The one typed configuration model of the pipeline.

Loaded from YAML (`deployments/demo.yaml`), overridden on the command line with
`--set data.dedup.threshold=0.9`, and used as the flows' parameter so the Prefect UI
renders it as a form. Every field carries a description: that text is the form's help.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tunegate.errors import InputError
from tunegate.secrets import redact

# PEFT's virtual-token methods (prompt/prefix/P-tuning): searched by their number of virtual tokens, not a rank.
VIRTUAL_TOKEN_METHODS = ("prompt_tuning", "prefix_tuning", "p_tuning")
RecordShape = Literal["auto", "alpaca", "prompt_completion", "chat", "text", "preference"]
FileFormat = Literal["auto", "jsonl", "json", "csv", "parquet"]


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class SourceConfig(StrictModel):
    path: str = Field(description="Local path or fsspec URL (s3://, gs://, https://, memory://) of one data file.")
    format: FileFormat = Field(
        default="auto", description="File format; `auto` picks it from the extension (.jsonl, .json, .csv, .parquet)."
    )
    shape: RecordShape = Field(
        default="auto",
        description="Record shape: alpaca (instruction/input/output), prompt_completion, chat (messages), text, "
        "preference (prompt/chosen/rejected pairs, or messages with chosen/rejected replies); `auto` detects it per "
        "record from the field names.",
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Map file column names to canonical ones, e.g. {text: prompt, category: completion}.",
    )
    labelled: bool = Field(
        default=False,
        description="This source's completions are class labels from task.labels: validation checks them against "
        "the set, the split stratifies by them.",
    )


class ValidationConfig(StrictModel):
    min_rows: int = Field(default=100, ge=1, description="Fewest valid rows a run may train on; fewer fails the run.")
    max_quarantine_fraction: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="Largest fraction of rows read that may be quarantined before the run fails.",
    )
    min_prompt_chars: int = Field(default=1, ge=0, description="Shortest prompt in characters (non-text rows).")
    max_prompt_chars: int = Field(default=4000, ge=1, description="Longest prompt in characters.")
    min_completion_chars: int = Field(default=1, ge=0, description="Shortest completion (target) in characters.")
    max_completion_chars: int = Field(default=4000, ge=1, description="Longest completion (target) in characters.")
    max_tokens: int = Field(
        default=1024, ge=1, description="Longest prompt + completion in tokens; checked only when a tokenizer is set."
    )
    tokenizer: str | None = Field(
        default=None, description="Tokenizer (local path or Hub id) for token-length checks; none skips them."
    )
    trust_remote_code: bool = Field(
        default=False, description="Allow the tokenizer's own Python code to run. Off unless you trust the source."
    )
    data_docs: bool = Field(default=True, description="Build the Great Expectations Data Docs site for each run.")


class DedupConfig(StrictModel):
    threshold: float = Field(
        default=0.85,
        gt=0.0,
        le=1.0,
        description="Jaccard similarity of word shingles at which two rows are near duplicates.",
    )
    shingle_words: int = Field(
        default=2,
        ge=1,
        le=8,
        description="Words per shingle. 2 suits short texts: one changed word in a 30-word ticket keeps Jaccard ~0.87.",
    )
    num_perm: int = Field(default=128, ge=16, le=1024, description="MinHash permutations (signature length).")
    fields: list[Literal["prompt", "completion", "rejected"]] = Field(
        default_factory=lambda: ["prompt", "completion", "rejected"],
        min_length=1,
        description="Canonical fields whose text is compared (a preference pair's chosen reply is its completion, "
        "its rejected reply `rejected`, empty for other rows).",
    )
    seed: int = Field(default=1, ge=0, description="Seed of the MinHash permutations.")


class SplitConfig(StrictModel):
    # Both are > 0: the sweep is judged on val rows and the gate on test rows; an empty split would make the
    # objective and the evaluation NaN after hours of training.
    val_fraction: float = Field(default=0.1, gt=0.0, lt=1.0, description="Fraction of kept rows for validation.")
    test_fraction: float = Field(default=0.1, gt=0.0, lt=1.0, description="Fraction of kept rows for the test set.")
    seed: int = Field(default=42, ge=0, description="Seed of the split: the same seed and data give the same split.")

    @model_validator(mode="after")
    def _train_rows_remain(self) -> SplitConfig:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"data.split: val_fraction + test_fraction = {self.val_fraction + self.test_fraction:g} leaves no "
                "train rows (must be below 1)"
            )
        return self


class DataConfig(StrictModel):
    sources: list[SourceConfig] = Field(min_length=1, description="Data files to read; their rows are concatenated.")
    validation: ValidationConfig = Field(default_factory=ValidationConfig, description="Data contract checks.")
    dedup: DedupConfig = Field(default_factory=DedupConfig, description="Exact and near-duplicate removal.")
    split: SplitConfig = Field(default_factory=SplitConfig, description="Train/val/test split.")


class TaskConfig(StrictModel):
    labels: list[str] | None = Field(
        default=None,
        description="Finite label set when the completion is a class label (classification); validation checks it, "
        "the split stratifies by it. None for free-text tasks.",
    )
    label_scoring: Literal["generation", "likelihood"] = Field(
        default="generation",
        description="Labelled tasks: what the sweep objective and the promotion gate score. generation: the greedy "
        "answer must be the label (what the registered model does when served); likelihood: the label whose tokens "
        "are most likely after the prompt (lm-eval's multiple choice: what a model knows whatever its answer format, "
        "fair to an instruct base that answers in prose). Both are reported for base and tuned either way.",
    )


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
        default=3, ge=0, description="More spikes than this in one run are flagged `grad_norm_spikes`."
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


# The learning-rate range searched when sweep.learning_rate_min/max are unset (log-uniform) around the rate each
# method's guides train with. LoRA 1e-4..1e-3: guides use 1e-4..3e-4 on 7B models and 2e-4 on SmolLM2 (smol-course);
# on SmolLM2-135M-Instruct 2.1e-3 and 2.4e-3 both raised the val loss 20% by step 7 while 2.4e-4 reached 0.985 val
# accuracy (the toy demo base, pretrained by us, takes 5e-4..2e-2 and sets it in demo_tiny.yaml); whole-model
# training ~10x lower than LoRA; PEFT's task guides train prompt tuning at 3e-2 (Lester et al. 2021: 0.3), prefix
# tuning at 1e-2 and P-tuning at 1e-3.
LEARNING_RATE_RANGES: dict[str, tuple[float, float]] = {
    "lora": (1e-4, 1e-3),
    "qlora": (1e-4, 1e-3),
    "full": (1e-5, 1e-3),
    "prompt_tuning": (3e-3, 3e-1),
    "prefix_tuning": (1e-3, 1e-1),
    "p_tuning": (1e-4, 1e-2),
}

# DPO recipes train 10-100x below SFT (TRL's DPO LoRA examples use 5e-6..5e-5 on 7B models against SFT's 1e-4..3e-4;
# Zephyr's full DPO 5e-7): a DPO run searches its method's range scaled by this. At the SFT range the demo's sweep
# chose 1.6e-3, won every test pair and broke its generations (ROUGE-L 0.86 -> 0.63, "technical" -> "2384e..ical").
DPO_RATE_FACTOR = 0.1


class SweepConfig(StrictModel):
    n_trials: int = Field(default=8, ge=1, description="Trials the study should have finished (a rerun tops it up).")
    lora_ranks: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [4, 8, 16, 32], min_length=1, description="LoRA ranks to choose from (each >= 1)."
    )
    virtual_tokens: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [8, 16, 32],
        min_length=1,
        description="Numbers of virtual tokens to choose from, for prompt_tuning, prefix_tuning and p_tuning.",
    )
    learning_rate_min: float | None = Field(
        default=None,
        gt=0.0,
        description="Lowest learning rate (log-uniform range); None: the method's default (lora 1e-4, full 1e-5, "
        "prompt_tuning 3e-3, prefix_tuning 1e-3, p_tuning 1e-4; a tenth of it for train.objective dpo).",
    )
    learning_rate_max: float | None = Field(
        default=None,
        gt=0.0,
        description="Highest learning rate (log-uniform range); None: the method's default (lora 1e-2, full 1e-3, "
        "prompt_tuning 3e-1, prefix_tuning 1e-1, p_tuning 1e-2; a tenth of it for train.objective dpo).",
    )
    objective: Literal["auto", "task_metric", "val_loss"] = Field(
        default="auto",
        description="What trials are judged (and pruned) on: task_metric = the task metric of greedy generations on "
        "validation rows (accuracy for labelled tasks, ROUGE-L otherwise), maximised; val_loss, minimised; auto: "
        "task_metric when task.labels is set, else val_loss.",
    )
    objective_rows: int = Field(
        default=200, ge=1, description="Validation rows the task-metric objective is measured on at each rung."
    )
    final: Literal["best_trial", "refit"] = Field(
        default="best_trial",
        description="best_trial: the best complete trial's best checkpoint is the candidate (no second training); "
        "refit: retrain the chosen params from scratch on the final budget.",
    )
    refit_with_val: bool = Field(
        default=False,
        description="refit only: train on train + val (no early stopping; the last checkpoint is the candidate).",
    )
    timeout_minutes: float | None = Field(
        default=None,
        gt=0.0,
        description="Wall-clock budget for the search (Optuna's timeout): no new trial starts after it.",
    )
    rungs: int = Field(
        default=2,
        ge=0,
        le=6,
        description="Pruning rungs below the full budget: the objective is reported at budget/rf^k for "
        "k = rungs..1 and at the full budget (rf = reduction_factor), so with 2 and rf 3: 1/9, 1/3, 1.",
    )
    trial_max_steps: int | None = Field(
        default=None,
        ge=1,
        description="Opt-in proxy: trials stop at this many steps instead of the final budget, and the winner is "
        "refit (needs final: refit). Risky: the rate that wins a short run often loses at the full budget "
        "(demo: 0.16 accuracy at 150 steps for the 30-step winner).",
    )
    pruner: Literal["successive_halving", "hyperband", "none"] = Field(
        default="successive_halving", description="Stops unpromising trials early on their reported objective."
    )
    startup_trials: int = Field(
        default=10,
        ge=1,
        description="Random trials before TPE models the results (Optuna's default); a sweep of no more trials is "
        "random search.",
    )
    reduction_factor: int = Field(
        default=3,
        ge=2,
        description="Successive halving keeps the best 1/reduction_factor of the trials at each rung "
        "(3, Hyperband's usual eta).",
    )
    storage: str | None = Field(
        default=None,
        description="Optuna storage URL (sqlite:///..., postgresql://...); None: a journal file under home.",
    )
    seed: int = Field(default=0, ge=0, description="Seed of the TPE sampler.")
    parallel_trials: int = Field(default=1, ge=1, description="Trials run at once through the flow's task runner.")
    task_runner: Literal["threads", "processes", "dask", "ray"] = Field(
        default="threads", description="Where trials run: threads or processes here, Dask or Ray on a cluster."
    )
    dask_address: str | None = Field(
        default=None,
        description="With task_runner dask: the scheduler of an existing Dask cluster (tcp://host:8786); None: a "
        "local cluster of parallel_trials worker processes for the run. Its workers must see home and the storage.",
    )

    def learning_rate_range(self, method: str, objective: str = "sft") -> tuple[float, float]:
        """The searched learning-rate range: the configured bounds, the method's default for an unset one (a tenth
        of it for DPO)."""
        factor = DPO_RATE_FACTOR if objective == "dpo" else 1.0
        low, high = (rate * factor for rate in LEARNING_RATE_RANGES[method])
        return (
            low if self.learning_rate_min is None else self.learning_rate_min,
            high if self.learning_rate_max is None else self.learning_rate_max,
        )

    @field_validator("storage")
    @classmethod
    def _storage_url_parses(cls, value: str | None) -> str | None:
        return None if value is None else checked_storage_url(value)


class EvalConfig(StrictModel):
    max_rows: int = Field(default=400, ge=1, description="Test rows evaluated (the first N of the test split).")
    batch_size: int = Field(default=32, ge=1, description="Rows per generation batch.")
    seed: int = Field(default=0, ge=0, description="Seed of the bootstrap interval.")


class RegistryConfig(StrictModel):
    tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI; None: $MLFLOW_TRACKING_URI, else sqlite:///<home>/mlflow.db.",
    )
    model_name: str | None = Field(default=None, description="Registered model name; None: the pipeline name.")

    @field_validator("tracking_uri")
    @classmethod
    def _tracking_uri_parses(cls, value: str | None) -> str | None:
        return None if value is None else checked_tracking_uri(value)

    @field_validator("model_name")
    @classmethod
    def _model_name_is_accepted(cls, value: str | None) -> str | None:
        return None if value is None else checked_model_name(value)

    min_gain_over_base: float = Field(
        default=0.05,
        description="The lower bound of the paired bootstrap 95% interval of (fine-tuned - base) task metric must "
        "reach this to become champion.",
    )
    min_gain_over_champion: float = Field(
        default=0.0,
        description="Replacing a champion: the lower bound of the 95% interval of (new - champion) on the same "
        "test rows must be above this.",
    )
    max_generation_drop: float = Field(
        default=0.0,
        ge=0.0,
        description="DPO runs: a model whose own answers (accuracy or ROUGE-L against the chosen replies) are worse "
        "than the base's by more than this, with the whole 95% interval of the change below -max_generation_drop, "
        "is not promoted. A policy can win every pair by pushing rejected replies down while its greedy answers "
        "degrade.",
    )


class ExportConfig(StrictModel):
    merged: bool = Field(
        default=False,
        description="Also export the adapter merged into the base's weights (PEFT merge_and_unload, safetensors): "
        "one model to serve, no adapter at run time. LoRA/QLoRA only.",
    )
    int8: bool = Field(
        default=False,
        description="Also export a CPU int8 build: every linear layer of the merged (or fully fine-tuned) weights "
        "dynamically quantized (torch), registered as merged safetensors that are quantized when loaded.",
    )
    max_metric_drop: float = Field(
        default=0.01,
        ge=0.0,
        description="An export is registered only if its task metric on the evaluation's test rows is at most this "
        "far below the adapter's; otherwise the summary says by how much it missed.",
    )
    latency_rows: int = Field(
        default=32,
        ge=1,
        description="Test rows answered one at a time (a request each, greedy) to time every build: p50/p95 ms.",
    )


class EvaluationSettings(StrictModel):
    """The parts of the config the evaluate stage reads (its cache key is these and the candidate's weights)."""

    model: ModelConfig = Field(description="The base model (the fine-tuned one is compared with it).")
    task: TaskConfig = Field(description="The task: its labels decide the metric and the rows scored.")
    evaluation: EvalConfig = Field(description="Rows, batch size and bootstrap seed of the comparison.")
    home: str = Field(description="Pipeline home (absolute): the evaluation's rows and scores are written under it.")
    dpo_beta: float | None = Field(
        default=None,
        description="A DPO run's beta (its rows are preference pairs, judged by preference accuracy against the "
        "base); None for SFT.",
    )


class ExportSettings(EvaluationSettings):
    """What the export stage reads: the evaluation's settings (its rows are scored again) and the exports."""

    export: ExportConfig = Field(description="Which builds to make and the metric drop each may have.")


class PipelineConfig(StrictModel):
    """Whole-pipeline configuration: one model, one YAML file, one Prefect parameter."""

    name: str = Field(default="tunegate", description="Pipeline name; names the MLflow experiment and model.")
    home: str = Field(
        default=".tunegate",
        description="Directory for stage outputs, quarantine files, Data Docs and logs (relative to the working dir).",
    )
    task: TaskConfig = Field(default_factory=TaskConfig, description="What the model is trained to do.")
    data: DataConfig = Field(description="Where the data comes from and how it is checked, deduplicated and split.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The base model.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="How adapters (or the full model) are trained.")
    sweep: SweepConfig = Field(
        default_factory=SweepConfig, description="Optuna search over LoRA rank and learning rate."
    )
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation against the base model.")
    registry: RegistryConfig = Field(default_factory=RegistryConfig, description="MLflow tracking and registration.")
    export: ExportConfig = Field(
        default_factory=ExportConfig, description="Merged and int8 builds, checked before they are registered."
    )

    @field_validator("name")
    @classmethod
    def _name_is_a_slug(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in "-_" for c in value):
            raise ValueError("use letters, digits, '-' and '_' only")
        return value

    @field_validator("home")
    @classmethod
    def _home_is_a_directory(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("expected a directory path, got an empty string")
        path = Path(value).expanduser()
        if path.exists() and not path.is_dir():
            raise ValueError(f"{path} exists and is not a directory")
        return value

    @model_validator(mode="after")
    def _learning_rate_range(self) -> PipelineConfig:
        low, high = self.sweep.learning_rate_range(self.train.method, self.train.objective)
        if low > high:
            raise ValueError(
                f"sweep.learning_rate_min {low:g} is above sweep.learning_rate_max {high:g} (for train.method "
                f"{self.train.method}; an unset bound is the method's default)"
            )
        return self

    @model_validator(mode="after")
    def _eight_bit_base_needs_an_adapter(self) -> PipelineConfig:
        if self.model.load_in_8bit and self.train.method in ("qlora", "full"):
            raise ValueError(
                f"model.load_in_8bit with train.method {self.train.method}: "
                + (
                    "qlora loads the base in 4 bits already"
                    if self.train.method == "qlora"
                    else "8-bit weights cannot be trained; use lora on the 8-bit base"
                )
            )
        return self

    @model_validator(mode="after")
    def _proxy_trials_need_a_refit(self) -> PipelineConfig:
        if self.sweep.trial_max_steps is not None and self.sweep.final != "refit":
            raise ValueError(
                "sweep.trial_max_steps (proxy trials) needs sweep.final: refit: a proxy trial is not trained to the "
                "budget it would ship with"
            )
        if self.sweep.refit_with_val and self.sweep.final != "refit":
            raise ValueError("sweep.refit_with_val needs sweep.final: refit")
        return self

    def objective(self) -> str:
        """The sweep objective after `auto`: task_metric for labelled tasks, val_loss for free text and for DPO (the
        DPO loss on held-out pairs)."""
        if self.sweep.objective != "auto":
            return self.sweep.objective
        return "task_metric" if self.task.labels and self.train.objective == "sft" else "val_loss"

    @model_validator(mode="after")
    def _dpo_recipe(self) -> PipelineConfig:
        if self.train.objective != "dpo":
            return self
        if self.train.method in VIRTUAL_TOKEN_METHODS:
            raise ValueError(
                f"train.objective dpo with train.method {self.train.method}: DPO trains lora, qlora or full (its "
                "reference is the base with the adapter disabled)"
            )
        if self.sweep.objective == "task_metric":
            raise ValueError(
                "sweep.objective task_metric with train.objective dpo: DPO trials are judged on the DPO loss of the "
                "held-out pairs (use auto or val_loss)"
            )
        return self

    @model_validator(mode="after")
    def _labelled_sources_need_labels(self) -> PipelineConfig:
        labelled = [s.path for s in self.data.sources if s.labelled]
        if labelled and not self.task.labels:
            raise ValueError(
                f"task.labels is empty but sources {labelled} are labelled (set the labels or labelled: false)"
            )
        return self

    @model_validator(mode="after")
    def _processes_need_a_refit(self) -> PipelineConfig:
        if self.train.processes > 1 and self.sweep.final != "refit":
            raise ValueError(
                f"train.processes={self.train.processes} trains the refit; with sweep.final={self.sweep.final} "
                "the best trial (one process) is the candidate: set sweep.final: refit"
            )
        return self

    def home_path(self) -> Path:
        return Path(self.home).expanduser().resolve()

    def registered_model_name(self) -> str:
        """The name versions are registered under: `registry.model_name`, else the pipeline's name."""
        return self.registry.model_name or self.name

    def with_model(self, model: ModelConfig) -> PipelineConfig:
        """This config with another model section (the base resolved from the registry)."""
        return self.model_copy(update={"model": model})

    def registry_settings(self) -> RegistryConfig:
        """`registry` with its model name resolved (what the register stage reads)."""
        return self.registry.model_copy(update={"model_name": self.registered_model_name()})

    def evaluation(self) -> EvaluationSettings:
        """What the evaluate stage reads."""
        return EvaluationSettings(
            model=self.model,
            task=self.task,
            evaluation=self.eval,
            home=str(self.home_path()),
            dpo_beta=self.train.dpo_beta if self.train.objective == "dpo" else None,
        )

    def export_settings(self) -> ExportSettings:
        """What the export stage reads."""
        return ExportSettings(**dict(self.evaluation()), export=self.export)


# Optuna RDB backends SQLAlchemy can open, and MLflow tracking URI schemes (files, databases, servers).
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "oracle", "mssql")
TRACKING_SCHEMES = ("file", "http", "https", "databricks", *DATABASE_SCHEMES)


def checked_storage_url(value: str) -> str:
    """`journal:<path>` or a database URL SQLAlchemy parses (sqlite:///..., postgresql://user@host/db)."""
    if value.startswith("journal:"):
        if not value.removeprefix("journal:").strip():
            raise ValueError("journal: needs a file path, e.g. journal:/data/optuna.log")
        return value
    check_database_url(value)
    return value


def check_database_url(value: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value)
    except (ArgumentError, ValueError) as exc:
        raise ValueError(f"not a database URL ({redact(value)}); expected e.g. sqlite:///optuna.db") from exc
    if url.get_backend_name() not in DATABASE_SCHEMES:
        raise ValueError(f"unsupported database {url.get_backend_name()!r}; expected one of {DATABASE_SCHEMES}")


def checked_tracking_uri(value: str) -> str:
    """A local path, file:, http(s)://host, databricks, or a database URL MLflow can store runs in."""
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    scheme = parts.scheme.split("+")[0]
    if not parts.scheme or (len(parts.scheme) == 1 and value[1:3] in (":\\", ":/")):  # a path (or C:\ path)
        return value
    if scheme not in TRACKING_SCHEMES:
        raise ValueError(f"unsupported scheme {parts.scheme!r} in {redact(value)}; expected one of {TRACKING_SCHEMES}")
    if scheme in ("http", "https") and not parts.hostname:
        raise ValueError(f"{redact(value)} has no host")
    if scheme in DATABASE_SCHEMES:
        check_database_url(value)
    return value


def checked_model_name(value: str) -> str:
    """MLflow's own rule for registered model names (it rejects empty names, '/' and ':')."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_model_name

    try:
        _validate_model_name(value)
    except MlflowException as exc:
        raise ValueError(exc.message) from exc
    return value


def parse_override(assignment: str) -> tuple[list[str], Any]:
    """Split `a.b.c=value` into its key path and a YAML-parsed value (`0.9` → float, `[a, b]` → list)."""
    if "=" not in assignment:
        raise InputError(f"--set {assignment!r}: expected key.path=value")
    dotted, raw_value = assignment.split("=", 1)
    return dotted.strip().split("."), yaml.safe_load(raw_value) if raw_value.strip() else ""


def apply_override(document: dict[str, Any], keys: list[str], value: Any) -> None:
    """Set `document[k1][k2]...[kn] = value`; list items are addressed by index (`data.sources.0.path`)."""
    node: Any = document
    for depth, key in enumerate(keys[:-1]):
        node = _child(node, key, keys[: depth + 1])
    last = keys[-1]
    if isinstance(node, list):
        node[_list_index(node, last, keys)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise InputError(f"--set {'.'.join(keys)}: {'.'.join(keys[:-1])} is a value ({node!r}), not a section")


def _child(node: Any, key: str, path: list[str]) -> Any:
    if isinstance(node, list):
        return node[_list_index(node, key, path)]
    if not isinstance(node, dict):
        raise InputError(f"--set {'.'.join(path)}: {'.'.join(path[:-1])} is not a section")
    return node.setdefault(key, {})


def _list_index(node: list, key: str, path: list[str]) -> int:
    if not key.isdigit() or int(key) >= len(node):
        raise InputError(f"--set {'.'.join(path)}: expected an index below {len(node)}, got {key!r}")
    return int(key)


def load_config(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Read a YAML config, apply `key.path=value` overrides, validate; user errors become one-line InputErrors."""
    config_path = Path(path)
    if not config_path.is_file():
        raise InputError(f"{config_path}: config file not found")
    try:
        document = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        line = config_path.read_bytes()[: exc.start].count(b"\n") + 1
        raise InputError(f"{config_path} line {line}: not UTF-8 (byte {exc.object[exc.start]:#04x})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise InputError(f"{config_path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    if not isinstance(document, dict):
        raise InputError(f"{config_path}: expected a mapping at the top level")
    check_no_passwords(document, config_path)
    for assignment in overrides or []:
        apply_override(document, *parse_override(assignment))
    return validate_config(document, str(config_path))


# URL fields whose password has a place in the environment instead of a config file (files are committed, and
# Prefect stores a deployment's parameters).
URL_FIELDS = {("sweep", "storage"): "PGPASSWORD", ("registry", "tracking_uri"): "MLFLOW_TRACKING_PASSWORD"}


def check_no_passwords(document: dict[str, Any], config_path: Path) -> None:
    """A config file never holds a password: the URLs in it name the user, the environment holds the secret."""
    from urllib.parse import urlsplit

    for (section, field), variable in URL_FIELDS.items():
        value = (document.get(section) or {}).get(field) if isinstance(document.get(section), dict) else None
        if isinstance(value, str) and "://" in value and urlsplit(value).password:
            raise InputError(
                f"{config_path}: {section}.{field} holds a password ({redact(value)}); keep secrets out of config "
                f"files: drop it from the URL and set {variable} in the environment"
            )


def validate_config(document: dict[str, Any], origin: str) -> PipelineConfig:
    """Validate a config mapping; the first problem becomes a one-line error naming the field."""
    try:
        return PipelineConfig.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        section_rule = first["type"] == "value_error" and isinstance(first.get("input"), dict)
        if not first["loc"] or section_rule:  # a section's own rule names its fields itself
            raise InputError(redact(f"{origin}: {message}")) from exc
        field = ".".join(str(part) for part in first["loc"])
        got = repr(first.get("input"))
        raise InputError(
            redact(f"{origin}: field {field}: {message} (got {got if len(got) <= 80 else got[:77] + '...'})")
        ) from exc


def pipeline_fingerprint(config: PipelineConfig) -> str:
    """What a trained model depends on in the config: everything but where outputs go and the trial count."""
    from tunegate.fingerprint import fingerprint_value

    relevant = config.model_dump(
        mode="json", exclude={"home": True, "sweep": {"n_trials", "parallel_trials", "task_runner", "dask_address"}}
    )
    return fingerprint_value(relevant)
