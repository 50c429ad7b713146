"""The one typed configuration model of the pipeline: `PipelineConfig`, one field per section (each section's model
in its own module beside this one), the rules that span sections, and its fingerprint.

Loaded from YAML (`deployments/demo.yaml`) and overridden on the command line with `--set data.dedup.threshold=0.9`
(`loading.py`), and used as the flows' parameter so the Prefect UI renders it as a form. Every field carries a
description: that text is the form's help.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from tunegate.config.base import StrictModel
from tunegate.config.data import DataConfig, TaskConfig
from tunegate.config.registry import (
    BaselineSettings,
    EvalConfig,
    EvaluationSettings,
    ExportConfig,
    ExportSettings,
    RegistryConfig,
    RetentionSettings,
    retention_path,
)
from tunegate.config.sweep import SweepConfig
from tunegate.config.train import VIRTUAL_TOKEN_METHODS, ModelConfig, TrainConfig


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

    def baseline_settings(self) -> BaselineSettings:
        """What the baseline stage reads."""
        return BaselineSettings(
            labels=self.task.labels,
            enabled=self.eval.baseline,
            preference_pairs=self.train.objective == "dpo",
            seed=self.eval.seed,
            home=str(self.home_path()),
        )

    def retention_settings(self) -> RetentionSettings:
        """What the retention stage reads (the retention file's fingerprint makes an edited file a new set)."""
        from tunegate.core.fingerprint import fingerprint_file

        path = retention_path(self.eval.retention)
        return RetentionSettings(
            model=self.model,
            retention=self.eval.retention,
            retention_fingerprint=fingerprint_file(path) if self.eval.retention.rows and Path(path).is_file() else "",
            batch_size=self.eval.batch_size,
            home=str(self.home_path()),
        )

    def export_settings(self) -> ExportSettings:
        """What the export stage reads."""
        return ExportSettings(**dict(self.evaluation()), export=self.export)


def pipeline_fingerprint(config: PipelineConfig) -> str:
    """What a trained model depends on in the config: everything but where outputs go and the trial count."""
    from tunegate.core.fingerprint import fingerprint_value

    relevant = config.model_dump(
        mode="json", exclude={"home": True, "sweep": {"n_trials", "parallel_trials", "task_runner", "dask_address"}}
    )
    return fingerprint_value(relevant)
