"""The `sweep:` section: the Optuna search over LoRA rank and learning rate, its pruning, storage and runners,
and the learning-rate ranges each method is searched over."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from tunegate.config.base import StrictModel, checked_storage_url

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
        description="Highest learning rate (log-uniform range); None: the method's default (lora 1e-3, full 1e-3, "
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
