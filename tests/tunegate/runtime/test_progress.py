"""Progress artifacts: the percentage and the sweep's one-line description."""

from __future__ import annotations

from tunegate.runtime.progress import percent, sweep_description


def test_percent_is_capped_and_an_empty_total_is_done():
    assert (percent(3, 8), percent(9, 8), percent(0, 0)) == (37.5, 100.0, 100.0)


def test_the_sweep_line_names_the_best_trial_once_there_is_one():
    assert sweep_description(2, 8, 1, None) == "Sweep: 2/8 trials finished (1 pruned)"
    best = (0.91234, {"learning_rate": 3e-4, "lora_r": 16})
    assert sweep_description(3, 8, 1, best, metric="accuracy") == (
        "Sweep: 3/8 trials finished (1 pruned); best accuracy 0.9123 at lora_r=16, learning_rate=3.00e-04"
    )
