"""What the sweep searches, per training method, in one place: the adapter's size (LoRA rank, or the number of
virtual tokens for prompt/prefix/p-tuning; nothing for full fine-tuning) x the learning rate (log-uniform, in the
method's default range, `config.LEARNING_RATE_RANGES`, unless the config sets one). Trials, the chosen params, the study
plots and the reports all read their names from here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunegate.config.train import VIRTUAL_TOKEN_METHODS

if TYPE_CHECKING:
    from tunegate.config.sweep import SweepConfig

INTEGER_PARAMS = ("lora_r", "num_virtual_tokens")
# Short names for run names (`trial-3 r=16 lr=2.1e-03`).
SHORT_NAMES = {"lora_r": "r", "num_virtual_tokens": "vt", "learning_rate": "lr"}


def size_param(method: str) -> str | None:
    """The searched size of the trained part: virtual tokens for the virtual-token methods, the LoRA rank for
    (q)lora, none for full fine-tuning (every weight trains)."""
    if method == "full":
        return None
    return "num_virtual_tokens" if method in VIRTUAL_TOKEN_METHODS else "lora_r"


def searched_params(method: str) -> tuple[str, ...]:
    size = size_param(method)
    return ("learning_rate",) if size is None else (size, "learning_rate")


def search_space(sweep: SweepConfig, method: str = "lora", objective: str = "sft") -> dict[str, Any]:
    """Optuna distributions of the searched params for `method` (and training objective: DPO's rates are lower)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    size = size_param(method)
    sizes = {"num_virtual_tokens": sweep.virtual_tokens, "lora_r": sweep.lora_ranks}
    low, high = sweep.learning_rate_range(method, objective)
    rate = {"learning_rate": FloatDistribution(low, high, log=True)}
    return rate if size is None else {size: CategoricalDistribution(sizes[size]), **rate}


def typed_params(params: dict[str, float | int]) -> dict[str, float | int]:
    """Sizes as ints, rates as floats (Optuna and JSON hand back either)."""
    return {name: int(value) if name in INTEGER_PARAMS else float(value) for name, value in params.items()}


def ordered_params(params: dict[str, Any]) -> dict[str, Any]:
    """The searched params of a trial, size first, learning rate last (Optuna keeps them in asking order)."""
    return dict(sorted(params.items(), key=lambda item: item[0] == "learning_rate"))


def formatted_params(params: dict[str, float | int | None]) -> dict[str, str]:
    """Each param as reports show it: sizes as integers, the learning rate as 2.39e-03; unset ones (a summary's
    null lora_r for a method without a rank) left out."""
    return {
        name: f"{value:.2e}" if name == "learning_rate" else f"{value}"
        for name, value in params.items()
        if value is not None
    }


def describe_params(params: dict[str, float | int]) -> str:
    """`lora_r=8, learning_rate=2.39e-03` (reports and progress)."""
    return ", ".join(f"{name}={value}" for name, value in formatted_params(params).items())


def short_params(params: dict[str, float | int]) -> str:
    """`r=8 lr=2.4e-03` (run names)."""
    return " ".join(
        f"{SHORT_NAMES.get(name, name)}={value:.1e}"
        if name == "learning_rate"
        else f"{SHORT_NAMES.get(name, name)}={value}"
        for name, value in params.items()
    )
