"""What each stage returns: typed results that carry references (path + fingerprint + counts) to the files the
stage wrote, never the data. They live here, below the stages, so the stages, the flows and the report share
them without importing each other; each result can say whether its outputs are intact (`output_problems`)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tunegate.config import SweepConfig
from tunegate.health import HealthReport
from tunegate.refs import AdapterRef, TableRef, file_problems


class SourceFingerprint(BaseModel):
    """A data source pinned to its content."""

    path: str
    fingerprint: str
    bytes: int


class IngestResult(BaseModel):
    """What ingest wrote."""

    canonical: TableRef
    rejected_path: str
    rejected_fingerprint: str
    rows_read: int
    rejected: int
    per_source: dict[str, int]

    def output_problems(self) -> list[str]:
        return file_problems(self.rejected_path, self.rejected_fingerprint)


class ValidationResult(BaseModel):
    """What validation found and wrote."""

    valid: TableRef
    quarantine_path: str
    quarantine_fingerprint: str
    quarantined: int
    rejected_at_ingest: int
    failed_row_checks: int
    failures_by_check: dict[str, int]
    success: bool
    failure_reason: str | None
    data_docs: str | None

    def output_problems(self) -> list[str]:
        return file_problems(self.quarantine_path, self.quarantine_fingerprint)


class DedupResult(BaseModel):
    """What deduplication kept and dropped."""

    kept: TableRef
    duplicates: TableRef
    exact_duplicates: int
    near_duplicates: int


class SplitResult(BaseModel):
    """The three splits and the leakage check."""

    train: TableRef
    val: TableRef
    test: TableRef
    test_train_near_duplicates: int
    groups_with_several_rows: int


class Predictions(BaseModel):
    """One model's outputs on the evaluation rows."""

    loss: float
    generations: list[str]
    # Labelled tasks: the label each row's prompt makes likeliest (`tunegate.label_likelihood`); None otherwise.
    label_choices: list[str] | None = None

    def answers(self, label_scoring: str) -> list[str]:
        """What the task metric scores: the greedy generations, or the likeliest labels when scoring by likelihood."""
        return (
            self.label_choices if label_scoring == "likelihood" and self.label_choices is not None else self.generations
        )


class EvalResult(BaseModel):
    """Base vs fine-tuned on the same rows; metrics are NaN when there were no rows (never promotable)."""

    task_metric: str
    rows: int
    # Labelled tasks: generation (greedy answers) or likelihood (the likeliest label) is what task_metric, delta and
    # the gate score; the other is reported beside it (`likelihood_accuracy` / `accuracy` in base and finetuned).
    label_scoring: str = "generation"
    base: dict[str, float]
    finetuned: dict[str, float]
    delta: float
    delta_ci95: tuple[float, float]
    examples: list[dict[str, str]]
    per_label_f1: dict[str, float] = {}
    # Preference pairs: the 95% interval of (fine-tuned - base) in each metric of the generations against the chosen
    # replies (accuracy, or ROUGE-L and exact match), for the gate's guard; empty for SFT.
    generation_ci95: dict[str, tuple[float, float]] = {}
    # Per-row task-metric scores (row order), for the gate's paired intervals; kept out of the summary JSON.
    base_scores: list[float] = Field(default_factory=list, exclude=True)
    finetuned_scores: list[float] = Field(default_factory=list, exclude=True)
    # Free text: per-row exact match of (base, fine-tuned), beside ROUGE-L; kept out of the summary JSON.
    exact_scores: tuple[list[float], list[float]] | None = Field(default=None, exclude=True)


class EvaluationOutput(BaseModel):
    """The comparison, the exact rows it was measured on, and both models' per-row scores on them."""

    result: EvalResult
    rows: TableRef
    scores: TableRef


class TrainResult(BaseModel):
    """What a training run produced and measured."""

    adapter_dir: str
    method: str
    steps: int
    objective: str = Field(description="The metric the best checkpoint was chosen on (accuracy, rouge_l, val_loss).")
    best_objective: float = Field(description="That metric at the kept checkpoint (NaN if never measured).")
    best_step: int = Field(description="Step of the kept checkpoint.")
    best_val_loss: float
    val_loss_history: list[tuple[int, float]]
    objective_history: list[tuple[int, float]]
    trainable_parameters: int = Field(description="Parameters the method trains (adapter, virtual tokens, or all).")
    train_tokens_seen: int
    tokens_per_second: float
    peak_memory_mb: float
    resumed_from_step: int
    overlength_rows: int
    stopped_early: bool
    health: HealthReport


class ChosenTrial(BaseModel):
    """The sweep's best complete, healthy trial: its params, its training result and its saved weights."""

    number: int
    params: dict[str, float | int]
    result: TrainResult
    adapter: AdapterRef
    mlflow_run_id: str | None


class TrainedModel(BaseModel):
    """The candidate: a training result, its saved weights, and where it came from."""

    result: TrainResult
    adapter: AdapterRef
    source: str = Field(description="`trial <n>` (the sweep's best trial, no second training) or `refit`.")
    mlflow_run_id: str | None = Field(default=None, description="The MLflow run that trained it.")


class StudyRef(BaseModel):
    """An Optuna study a trial task reattaches to: its name, its storage URL and the search it was opened with."""

    name: str
    storage: str = Field(description="`journal:<path>` or a database URL (may hold a password: shown redacted).")
    sweep: SweepConfig


class SweepResult(BaseModel):
    """The study after this run's trials, and the trial it chose."""

    study_name: str
    storage: str
    objective: str
    direction: str
    n_trials: int
    n_pruned: int
    best_params: dict[str, float | int]
    best_value: float
    trial_steps_total: int
    chosen: ChosenTrial
    trials_run: int = 0  # trial tasks this run executed (not served from cache)
    stopped_by_timeout: bool = False

    @property
    def served_from_cache(self) -> bool:
        """Every trial this run needed was already in the study or the cache."""
        return self.trials_run == 0


class RegistryResult(BaseModel):
    """Which version was registered and where the aliases ended."""

    model_name: str
    version: str
    aliases: list[str]
    promoted: bool
    reason: str
    model_uri: str


class ExportedBuild(BaseModel):
    """One build of the trained model (the adapter as trained, merged, int8), measured on the evaluation's test
    rows: its task metric, its latency per request and its weights' size, and whether it may be registered."""

    name: str = Field(description="adapter, merged or int8.")
    weights: AdapterRef | None = Field(default=None, description="The directory it loads from; None: not built.")
    quantization: str | None = Field(default=None, description="int8_dynamic: quantized when loaded.")
    task_metric: float = Field(default=float("nan"), description="The evaluation's task metric on the test rows.")
    metric_drop: float = Field(default=float("nan"), description="The adapter's task metric minus this build's.")
    p50_ms: float = Field(default=float("nan"), description="Median milliseconds to answer one row alone.")
    p95_ms: float = Field(default=float("nan"), description="95th percentile of the same.")
    size_mb: float = Field(default=float("nan"), description="Weights served, MiB (an adapter counts its base).")
    registrable: bool = Field(default=False, description="Built and within export.max_metric_drop of the adapter.")
    reason: str = Field(description="Why it is (not) registered, with the numbers.")
    version: str | None = Field(default=None, description="Its model version once registered.")
    alias: str | None = Field(default=None, description="Its alias: the adapter version's alias + '-' + name.")


class ExportResult(BaseModel):
    """The adapter and each configured export, side by side (no builds when no export is configured)."""

    task_metric: str
    base_model: str = Field(description="The base the builds were made from (recorded on their versions).")
    trust_remote_code: bool = Field(default=False, description="Whether loading the builds may run model code.")
    builds: list[ExportedBuild] = Field(default_factory=list)

    def exports(self) -> list[ExportedBuild]:
        """The builds other than the adapter itself."""
        return [build for build in self.builds if build.name != "adapter"]
