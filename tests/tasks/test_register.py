from types import SimpleNamespace

from tasks.evaluate import EvalResult
from tasks.register import promotion_decision


def evaluation(base: float, tuned: float) -> EvalResult:
    return EvalResult(
        task_metric="accuracy",
        rows=10,
        base={"accuracy": base, "loss": 3.0},
        finetuned={"accuracy": tuned, "loss": 1.0},
        delta=tuned - base,
        delta_ci95=(tuned - base - 0.1, tuned - base + 0.1),
        examples=[],
    )


def test_first_good_candidate_becomes_champion():
    assert promotion_decision(evaluation(0.1, 0.8), 0.05, None, None) == (
        True,
        "promoted: accuracy 0.800 vs base 0.100 (gain +0.700, needed +0.050); no champion yet",
    )


def test_too_small_a_gain_over_base_is_not_promoted():
    assert promotion_decision(evaluation(0.5, 0.52), 0.05, None, None) == (
        False,
        "not promoted: accuracy 0.520 vs base 0.500 (gain +0.020, needed +0.050)",
    )


def test_a_candidate_must_beat_the_champion_on_the_same_rows():
    champion = SimpleNamespace(version="3")
    assert promotion_decision(evaluation(0.1, 0.8), 0.05, champion, 0.85) == (
        False,
        "not promoted: accuracy 0.800 vs base 0.100 (gain +0.700, needed +0.050), "
        "but champion v3 has 0.850 on these rows",
    )
    assert promotion_decision(evaluation(0.1, 0.9), 0.05, champion, 0.85) == (
        True,
        "promoted: accuracy 0.900 vs base 0.100 (gain +0.800, needed +0.050); beats champion v3 (0.850)",
    )
