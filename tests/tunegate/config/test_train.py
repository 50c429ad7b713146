"""The `model:` and `train:` sections: safe defaults a user gets without writing them, and every bound or choice
broken by a config is a one-line error naming the file, the field and what was given."""

from __future__ import annotations

import typing

import pytest

from tests.conftest import REPO
from tunegate.config.loading import load_config
from tunegate.config.train import VIRTUAL_TOKEN_METHODS, ModelConfig, TrainConfig
from tunegate.core.errors import InputError

DEMO_CONFIG = REPO / "deployments" / "demo.yaml"


def test_the_defaults_are_the_real_base_safe_loading_and_lora_at_the_guides_rate():
    model, recipe = ModelConfig(), TrainConfig()
    assert (model.base, model.trust_remote_code, model.load_in_8bit, model.max_tokens, model.system_prompt) == (
        "smollm2-135m-instruct",
        False,  # no model code runs unless the config says so
        False,
        512,
        None,
    )
    assert (recipe.objective, recipe.method, recipe.learning_rate, recipe.lora_top_layers) == (
        "sft",
        "lora",
        2e-4,
        None,
    )
    assert (recipe.precision, recipe.packing, recipe.kernels, recipe.compile) == ("auto", "auto", "auto", False)
    assert (recipe.health.min_loss_drop, recipe.health.judged_after_steps) == (0.05, 10)


def test_every_virtual_token_method_is_a_method_the_section_accepts():
    methods = typing.get_args(TrainConfig.model_fields["method"].annotation)
    assert methods == ("lora", "qlora", "full", "prompt_tuning", "prefix_tuning", "p_tuning")
    assert set(VIRTUAL_TOKEN_METHODS) < set(methods)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.warmup_ratio=1.0", "field train.warmup_ratio: Input should be less than 1 (got 1.0)"),
        (
            "train.method=adalora",
            "field train.method: Input should be 'lora', 'qlora', 'full', 'prompt_tuning', 'prefix_tuning' or "
            "'p_tuning' (got 'adalora')",
        ),
        ("train.lora_top_layers=0", "field train.lora_top_layers: Input should be greater than or equal to 1 (got 0)"),
        ("train.health.min_loss_drop=1.0", "field train.health.min_loss_drop: Input should be less than 1 (got 1.0)"),
        ("model.max_tokens=0", "field model.max_tokens: Input should be greater than or equal to 8 (got 0)"),
        ("train.objective=ppo", "field train.objective: Input should be 'sft' or 'dpo' (got 'ppo')"),
        ("train.lora_rank=8", "field train.lora_rank: Extra inputs are not permitted (got 8)"),  # a typo is not ignored
        (
            "model.trust_remote_code=maybe",
            "field model.trust_remote_code: Input should be a valid boolean, unable to interpret input (got 'maybe')",
        ),
    ],
)
def test_a_value_outside_the_sections_bounds_is_one_line_naming_file_and_field(override, message):
    with pytest.raises(InputError) as raised:
        load_config(DEMO_CONFIG, [override])
    assert str(raised.value) == f"{DEMO_CONFIG}: {message}"
