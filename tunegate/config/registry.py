"""The `eval:`, `registry:` and `export:` sections (how the tuned model is scored, when it is promoted, which
builds are made), and the settings the evaluation and export stages take from them."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from tunegate.config.base import StrictModel, checked_model_name, checked_tracking_uri
from tunegate.config.data import TaskConfig
from tunegate.config.train import ModelConfig

# 209 general instructions written for the project (`demo/make_retention_set.py`), shipped with the package.
RETENTION_SET = Path(__file__).resolve().parents[1] / "evaluation" / "retention.jsonl"


class RetentionConfig(StrictModel):
    path: str | None = Field(
        default=None,
        description="General instructions the tuned model's drift from its base is measured on (any record shape "
        "ingest reads; their prompts are used). None: the 209 prompts shipped with tunegate "
        "(tunegate/evaluation/retention.jsonl).",
    )
    rows: int = Field(default=100, ge=0, description="Retention prompts used (the first N); 0 turns drift off.")
    max_new_tokens: int = Field(
        default=32, ge=1, description="Length of the base's greedy answers, the references drift is measured on."
    )
    match_tokens: int = Field(
        default=8, ge=1, description="A candidate's greedy answer still matches the base's when its first N tokens do."
    )


def retention_path(retention: RetentionConfig) -> str:
    """The configured retention file, else the shipped set."""
    return retention.path or str(RETENTION_SET)


class EvalConfig(StrictModel):
    max_rows: int = Field(default=400, ge=1, description="Test rows evaluated (the first N of the test split).")
    batch_size: int = Field(default=32, ge=1, description="Rows per generation batch.")
    seed: int = Field(default=0, ge=0, description="Seed of the bootstrap interval.")
    retention: RetentionConfig = Field(
        default_factory=RetentionConfig,
        description="Drift from the base on general instructions: what the tuned model forgets (eval.drift).",
    )
    baseline: bool = Field(
        default=True,
        description="Labelled tasks: also score a TF-IDF (word 1-2-grams) + logistic regression classifier, fitted "
        "on the train split only, on the same test rows (eval.baseline): is the LLM worth it? Seconds on 4k rows.",
    )


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
    min_gain_over_baseline: float | None = Field(
        default=None,
        description="Labelled tasks: the lower bound of the 95% interval of (fine-tuned - classical baseline) "
        "accuracy on the same test rows must reach this to become champion (eval.baseline); None: the baseline is "
        "reported, never gated. Off by default: a tuned LLM may be wanted for what a classifier cannot do (explain, "
        "follow-ups) even where it classifies no better.",
    )
    max_generation_drop: float = Field(
        default=0.0,
        ge=0.0,
        description="DPO runs: a model whose own answers (accuracy or ROUGE-L against the chosen replies) are worse "
        "than the base's by more than this, with the whole 95% interval of the change below -max_generation_drop, "
        "is not promoted. A policy can win every pair by pushing rejected replies down while its greedy answers "
        "degrade.",
    )
    max_drift: float | None = Field(
        default=3.0,
        description="A candidate whose drift from the base (nats/token on the retention prompts, eval.retention) "
        "has a 95% interval lower bound above this is not promoted; None: drift is reported, never gated. Measured "
        "on SmolLM2, 100 prompts: the demo's LoRA candidate (60 steps) 1.59 (1.48 .. 1.71), it answers every prompt "
        "with a label; 16 steps of full fine-tuning at lr 1e-3 5.25 (4.91 .. 5.61). 3.0 (the base's answers e^3, 20x, "
        "less likely per token) passes a task fine-tune that specialises and refuses one that broke the model.",
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


class BaselineSettings(StrictModel):
    """What the baseline stage reads: the task's labels, whether it is on, and the bootstrap seed."""

    labels: list[str] | None = Field(description="The task's labels; None (free text) skips the baseline.")
    enabled: bool = Field(description="eval.baseline.")
    preference_pairs: bool = Field(description="A DPO run (preference pairs, not labels): skipped.")
    seed: int = Field(description="Seed of the bootstrap interval and the logistic regression.")
    home: str = Field(description="Pipeline home (absolute): predictions and vocabulary are written under it.")


class RetentionSettings(StrictModel):
    """What the retention stage reads: the base answers the retention prompts once (cached per base and set)."""

    model: ModelConfig = Field(description="The base whose answers are the references.")
    retention: RetentionConfig = Field(description="The retention prompts and answer length.")
    retention_fingerprint: str = Field(description="sha256 of the retention file (a changed file is a new set).")
    batch_size: int = Field(description="Prompts per generation batch.")
    home: str = Field(description="Pipeline home (absolute): the references are written under it.")


class ExportSettings(EvaluationSettings):
    """What the export stage reads: the evaluation's settings (its rows are scored again) and the exports."""

    export: ExportConfig = Field(description="Which builds to make and the metric drop each may have.")
