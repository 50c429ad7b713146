"""Health checks: the loss must fall by a share of what training can remove."""

from __future__ import annotations


def test_the_loss_must_fall_by_a_fraction_of_the_part_training_can_remove():
    from tunegate.config.train import HealthConfig
    from tunegate.training.health import HealthWatch

    dpo = HealthWatch(HealthConfig(), first_rung=8, initial_val_loss=1.695, removable_loss=0.6931)
    dpo.observe_evaluation(8, 1.671)  # -0.024: 3.5% of ln 2
    assert dpo.report().issues == [
        "loss_not_falling: val loss 1.695 before training -> 1.671 at step 8 (-3.5% of 0.693, needed -5.0%)"
    ]
    learning = HealthWatch(HealthConfig(), first_rung=8, initial_val_loss=1.695, removable_loss=0.6931)
    learning.observe_evaluation(8, 1.630)  # -0.065: 9.4% of ln 2 (3.8% of the whole loss)
    assert learning.report().healthy
