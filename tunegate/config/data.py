"""The `data:` section (sources, validation, near-duplicate removal, split) and the `task:` section (what the
rows ask of the model and how answers are scored)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tunegate.config.base import StrictModel

RecordShape = Literal["auto", "alpaca", "prompt_completion", "chat", "text", "preference"]


FileFormat = Literal["auto", "jsonl", "json", "csv", "parquet"]


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
