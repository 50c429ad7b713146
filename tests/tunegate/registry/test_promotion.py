"""The gate: promotion over the base and the champion by the lower bound of paired bootstrap intervals, with
the reason quoting them."""

import numpy as np

from tests.fixtures.registry import drifted, evaluation, scores
from tunegate.config.registry import RegistryConfig
from tunegate.evaluation.results import BaselineResult, EvalResult
from tunegate.evaluation.scoring import paired_bootstrap_ci
from tunegate.registry.promotion import Champion, promotion_decision
from tunegate.training.health import HealthReport

HEALTHY = HealthReport()


def decide(base, tuned, champion=None, health=HEALTHY, **registry):
    return promotion_decision(evaluation(base, tuned), base, tuned, RegistryConfig(**registry), health, champion)


def test_first_good_candidate_becomes_champion_with_the_interval_in_the_reason():
    low, high = paired_bootstrap_ci(scores(0), scores(16), 0)
    assert decide(scores(0), scores(16)) == (
        True,
        f"promoted: accuracy 0.800 vs base 0.000 (gain +0.800, 95% CI {low:+.3f} .. {high:+.3f}, "
        "lower bound needed +0.050); no champion yet",
    )
    assert low > 0.5


def test_a_point_gain_above_the_threshold_is_not_enough_when_the_interval_reaches_below_it():
    base, tuned = scores(0, 10), scores(1, 10)  # +0.1 on one row of ten: the interval starts at 0
    promoted, reason = decide(base, tuned, min_gain_over_base=0.05)
    assert not promoted
    assert reason == (
        "not promoted: accuracy 0.100 vs base 0.000 (gain +0.100, 95% CI +0.000 .. +0.300, lower bound needed +0.050)"
    )


def test_nan_or_no_rows_never_promote_whatever_the_threshold():
    empty = np.array([])
    assert decide(empty, empty, min_gain_over_base=-1.0) == (
        False,
        "not promoted: no evaluation (accuracy nan vs base nan on 0 rows)",
    )


def test_an_unhealthy_training_run_is_never_promoted():
    health = HealthReport(healthy=False, issues=["grad_norm_spikes: 4 norms above 5x the median 1.2"])
    assert decide(scores(0), scores(18), health=health) == (
        False,
        "not promoted: training was unhealthy (grad_norm_spikes: 4 norms above 5x the median 1.2)",
    )


def test_replacing_a_champion_needs_the_interval_of_the_difference_above_zero():
    champion = Champion(version="3", scores=scores(15))
    # One more right answer than the champion on 20 rows: the interval of the difference includes 0.
    promoted, reason = decide(scores(0), scores(16), champion)
    low, high = paired_bootstrap_ci(scores(15), scores(16), 0)
    assert not promoted and low == 0.0
    assert reason.endswith(
        f"but vs champion v3 0.750 on these rows (95% CI of the difference {low:+.3f} .. {high:+.3f}, "
        "lower bound must exceed +0.000)"
    )
    promoted, reason = decide(scores(0), scores(20), champion)
    assert promoted and reason.startswith("promoted: accuracy 1.000 vs base 0.000") and "beats champion v3" in reason


def test_the_champion_margin_is_configurable():
    champion = Champion(version="1", scores=scores(10))
    assert decide(scores(0), scores(20), champion, min_gain_over_champion=0.2)[0] is True
    assert decide(scores(0), scores(20), champion, min_gain_over_champion=0.6)[0] is False


def test_a_dpo_model_whose_own_answers_are_demonstrably_worse_is_not_promoted_whatever_its_preference_accuracy():
    base, tuned = np.full(20, 0.5), scores(20)
    evaluation = EvalResult(
        task_metric="preference_accuracy",
        rows=20,
        base={"preference_accuracy": 0.5, "rouge_l": 0.515, "exact_match": 0.175, "loss": 3.5},
        finetuned={"preference_accuracy": 1.0, "rouge_l": 0.491, "exact_match": 0.088, "loss": 3.5},
        delta=0.5,
        delta_ci95=(0.5, 0.5),
        examples=[],
        generation_ci95={"rouge_l": (-0.060, 0.009), "exact_match": (-0.150, -0.025)},
    )
    assert promotion_decision(evaluation, base, tuned, RegistryConfig(), HEALTHY, None) == (
        False,
        "not promoted: preference_accuracy 1.000 vs base 0.500 (gain +0.500, 95% CI +0.500 .. +0.500, lower bound "
        "needed +0.050), but its answers against the chosen replies got worse beyond registry.max_generation_drop "
        "0.000: exact_match 0.175 -> 0.088 (95% CI of the change -0.150 .. -0.025)",
    )
    # A drop the interval cannot tell from noise does not block; nor does one within the allowed drop.
    noise = evaluation.model_copy(update={"generation_ci95": {"rouge_l": (-0.060, 0.009)}})
    assert promotion_decision(noise, base, tuned, RegistryConfig(), HEALTHY, None) == (
        True,
        "promoted: preference_accuracy 1.000 vs base 0.500 (gain +0.500, 95% CI +0.500 .. +0.500, lower bound "
        "needed +0.050); no champion yet",
    )
    assert promotion_decision(evaluation, base, tuned, RegistryConfig(max_generation_drop=0.03), HEALTHY, None)[0]


def test_a_candidate_that_drifted_past_max_drift_is_not_promoted_and_the_reason_quotes_the_interval():
    base, tuned = scores(0), scores(16)
    low, high = paired_bootstrap_ci(base, tuned, 0)
    gain = f"accuracy 0.800 vs base 0.000 (gain +0.800, 95% CI {low:+.3f} .. {high:+.3f}, lower bound needed +0.050)"
    far = evaluation(base, tuned).model_copy(update={"drift": drifted(1.2, 1.6)})
    assert promotion_decision(far, base, tuned, RegistryConfig(max_drift=1.0), HEALTHY, None) == (
        False,
        f"not promoted: {gain}, but it drifted from the base by 1.400 nats/token on 100 retention prompts "
        "(95% CI 1.200 .. 1.600, above registry.max_drift 1.000)",
    )
    # With the gate off (or at its default 3.0) the same candidate is promoted, its drift stated.
    assert promotion_decision(far, base, tuned, RegistryConfig(), HEALTHY, None)[0]
    assert promotion_decision(far, base, tuned, RegistryConfig(max_drift=None), HEALTHY, None)[0]
    near = evaluation(base, tuned).model_copy(update={"drift": drifted(0.1, 0.3)})
    assert promotion_decision(near, base, tuned, RegistryConfig(), HEALTHY, None) == (
        True,
        f"promoted: {gain}; drift 0.200 nats/token (95% CI 0.100 .. 0.300), first 8 tokens match 0.500 on 100 "
        "retention prompts; no champion yet",
    )


def test_a_champion_comparison_states_the_drift_of_both():
    near = evaluation(scores(0), scores(20)).model_copy(update={"drift": drifted(0.1, 0.3)})
    champion = Champion(version="3", scores=scores(10), drift=0.45)
    promoted, reason = promotion_decision(near, scores(0), scores(20), RegistryConfig(), HEALTHY, champion)
    assert promoted and "drift 0.200 nats/token" in reason and "champion v3 0.500 on these rows, drift 0.450" in reason


def baseline_scoring(right: int, rows: int = 20) -> BaselineResult:
    baseline_scores = scores(right, rows)
    return BaselineResult(rows=rows, accuracy=right / rows, scores=baseline_scores.tolist())


def test_a_candidate_a_classifier_beats_stays_challenger_when_the_baseline_bar_is_set():
    base, tuned, strong = scores(0), scores(10), baseline_scoring(18)
    evaluated = evaluation(base, tuned)
    low, high = paired_bootstrap_ci(np.array(strong.scores), tuned, 0)
    registry = RegistryConfig(min_gain_over_baseline=0.0)
    promoted, reason = promotion_decision(evaluated, base, tuned, registry, HEALTHY, None, baseline=strong)
    base_low, base_high = paired_bootstrap_ci(base, tuned, 0)
    assert not promoted
    assert reason == (
        f"not promoted: accuracy 0.500 vs base 0.000 (gain +0.500, 95% CI {base_low:+.3f} .. {base_high:+.3f}, "
        f"lower bound needed +0.050), but vs the classical baseline tfidf-logreg 0.900 on these rows (gain -0.400, "
        f"95% CI {low:+.3f} .. {high:+.3f}, lower bound needed +0.000: registry.min_gain_over_baseline)"
    )
    assert high < 0.0
    # Off by default: the same candidate is promoted on its gain over the base alone.
    assert promotion_decision(evaluated, base, tuned, RegistryConfig(), HEALTHY, None, baseline=strong)[0]


def test_clearing_the_baseline_bar_is_quoted_in_the_reason_and_a_skipped_baseline_is_no_bar():
    base, tuned = scores(0), scores(20)
    registry = RegistryConfig(min_gain_over_baseline=0.1)
    promoted, reason = promotion_decision(
        evaluation(base, tuned), base, tuned, registry, HEALTHY, None, baseline=baseline_scoring(10)
    )
    low, high = paired_bootstrap_ci(scores(10), tuned, 0)
    assert promoted and low >= 0.1
    assert reason.endswith(
        f"; beats the classical baseline tfidf-logreg 0.500 on these rows (gain +0.500, 95% CI {low:+.3f} .. "
        f"{high:+.3f}, lower bound needed +0.100: registry.min_gain_over_baseline); no champion yet"
    )
    skipped = BaselineResult(skipped="preference pairs have no labels to classify")
    assert (
        promotion_decision(evaluation(base, tuned), base, tuned, registry, HEALTHY, None, baseline=skipped)[1]
        == (promotion_decision(evaluation(base, tuned), base, tuned, RegistryConfig(), HEALTHY, None)[1])
    )
