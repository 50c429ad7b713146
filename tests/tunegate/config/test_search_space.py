from optuna.distributions import CategoricalDistribution, FloatDistribution

from tunegate.config.search_space import describe_params, search_space, searched_params, short_params
from tunegate.config.sweep import SweepConfig


def test_lora_searches_rank_and_its_default_learning_rates():
    assert search_space(SweepConfig(), "lora") == {
        "lora_r": CategoricalDistribution([4, 8, 16, 32]),
        "learning_rate": FloatDistribution(1e-4, 1e-3, log=True),
    }


def test_full_fine_tuning_searches_only_a_lower_learning_rate():
    assert searched_params("full") == ("learning_rate",)
    assert search_space(SweepConfig(), "full") == {"learning_rate": FloatDistribution(1e-5, 1e-3, log=True)}


def test_virtual_token_methods_search_token_counts_in_their_own_rate_ranges():
    sweep = SweepConfig(virtual_tokens=[4, 20])
    ranges = {
        name: search_space(sweep, name)["learning_rate"] for name in ("prompt_tuning", "prefix_tuning", "p_tuning")
    }
    assert ranges == {
        "prompt_tuning": FloatDistribution(3e-3, 3e-1, log=True),
        "prefix_tuning": FloatDistribution(1e-3, 1e-1, log=True),
        "p_tuning": FloatDistribution(1e-4, 1e-2, log=True),
    }
    assert search_space(sweep, "p_tuning")["num_virtual_tokens"] == CategoricalDistribution([4, 20])


def test_a_configured_bound_replaces_only_that_end_of_the_default_range():
    assert search_space(SweepConfig(learning_rate_max=0.05), "prefix_tuning")["learning_rate"] == FloatDistribution(
        1e-3, 5e-2, log=True
    )


def test_params_are_named_for_reports_and_run_names():
    params = {"num_virtual_tokens": 16, "learning_rate": 0.0312}
    assert describe_params(params) == "num_virtual_tokens=16, learning_rate=3.12e-02"
    assert short_params(params) == "vt=16 lr=3.1e-02"
