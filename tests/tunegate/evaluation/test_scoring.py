import math

from tunegate.evaluation.scoring import mean_or_nan, task_metric_name, tie_broken


def test_ties_break_toward_the_lower_val_loss_without_reordering_distinct_values():
    assert tie_broken(0.0, 4.2) > tie_broken(0.0, 4.9)
    # One row of 200 (0.005) outweighs any val-loss difference below 100.
    assert tie_broken(0.505, 99.0) > tie_broken(0.5, 0.0)
    assert tie_broken(0.5, 2.0) == 0.5 - 2e-6
    assert tie_broken(math.nan, 1.0) == -math.inf


def test_the_task_metric_follows_the_label_set_and_no_rows_is_nan():
    assert (task_metric_name(["a"]), task_metric_name(None)) == ("accuracy", "rouge_l")
    import numpy as np

    assert math.isnan(mean_or_nan(np.array([])))
    assert mean_or_nan(np.array([1.0, 0.0])) == 0.5
