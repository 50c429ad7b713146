"""The `sweep:` section: the learning-rate range each method is searched over, and the configured bounds."""

from __future__ import annotations

import pytest

from tests.conftest import REPO
from tunegate.config.loading import load_config
from tunegate.config.sweep import DPO_RATE_FACTOR, SweepConfig
from tunegate.core.errors import InputError


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("lora", (1e-4, 1e-3)),
        ("qlora", (1e-4, 1e-3)),
        ("full", (1e-5, 1e-3)),
        ("prompt_tuning", (3e-3, 3e-1)),
        ("prefix_tuning", (1e-3, 1e-1)),
        ("p_tuning", (1e-4, 1e-2)),
    ],
)
def test_each_method_is_searched_around_its_guides_rate(method, expected):
    assert SweepConfig().learning_rate_range(method) == pytest.approx(expected, rel=1e-12)


def test_dpo_searches_a_tenth_of_the_range_and_configured_bounds_win_over_either_default():
    assert DPO_RATE_FACTOR == 0.1
    assert SweepConfig().learning_rate_range("lora", "dpo") == pytest.approx((1e-5, 1e-4), rel=1e-12)
    low_only = SweepConfig(learning_rate_min=5e-4)
    assert low_only.learning_rate_range("lora") == pytest.approx((5e-4, 1e-3), rel=1e-12)
    assert low_only.learning_rate_range("lora", "dpo") == pytest.approx((5e-4, 1e-4), rel=1e-12)
    both = SweepConfig(learning_rate_min=5e-4, learning_rate_max=2e-2)
    assert both.learning_rate_range("full", "dpo") == (5e-4, 2e-2)


def test_the_demo_configs_set_their_ranges_where_the_default_does_not_suit_the_base():
    tiny = load_config(REPO / "deployments" / "demo_tiny.yaml")
    assert tiny.sweep.learning_rate_range("lora") == (5e-4, 2e-2)  # the toy base needs rates a real LLM diverges at
    real = load_config(REPO / "deployments" / "demo.yaml")
    assert real.sweep.learning_rate_range("lora") == pytest.approx((1e-4, 1e-3), rel=1e-12)


def test_a_storage_url_is_checked_when_the_config_loads():
    config = REPO / "deployments" / "demo.yaml"
    with pytest.raises(InputError) as raised:
        load_config(config, ["sweep.storage='journal:'"])  # quoted: YAML reads a bare `journal:` as a mapping
    assert str(raised.value) == (
        f"{config}: field sweep.storage: journal: needs a file path, e.g. journal:/data/optuna.log (got 'journal:')"
    )
