"""Health checks: the loss must fall by a share of what training can remove, judged once warm-up is over; a loss
that shoots up is flagged at once."""

from __future__ import annotations

from tunegate.config.train import HealthConfig, TrainConfig
from tunegate.training.budget import fixed_plan
from tunegate.training.health import HealthWatch
from tunegate.training.run_watch import judged_step


def test_the_loss_must_fall_by_a_fraction_of_the_part_training_can_remove():
    dpo = HealthWatch(HealthConfig(), first_rung=8, initial_val_loss=1.695, removable_loss=0.6931)
    dpo.observe_evaluation(8, 1.671)  # -0.024: 3.5% of ln 2
    assert dpo.report().issues == [
        "loss_not_falling: val loss 1.695 before training -> 1.671 at step 8 (-3.5% of 0.693, needed -5.0%)"
    ]
    learning = HealthWatch(HealthConfig(), first_rung=8, initial_val_loss=1.695, removable_loss=0.6931)
    learning.observe_evaluation(8, 1.630)  # -0.065: 9.4% of ln 2 (3.8% of the whole loss)
    assert learning.report().healthy


def test_short_runs_are_judged_after_warm_up_not_at_their_first_rung():
    # A 20-step smoke run's first rung at step 3 is judged at step 10; an 8-step run at its end; a long one at its
    # first rung.
    recipe = TrainConfig()
    assert judged_step(fixed_plan(20, [3, 7, 20]), recipe) == 10
    assert judged_step(fixed_plan(8, [4, 8]), recipe) == 8
    assert judged_step(fixed_plan(180, [20, 60, 180]), recipe) == 20


def test_gradient_spikes_count_only_once_warm_up_norms_no_longer_set_the_scale():
    watch = HealthWatch(HealthConfig(), first_rung=10)
    # Warm-up: tiny norms, then large ones as the rate rises (measured shape on SmolLM2: 0.285 median, 18.2 largest).
    for step, norm in enumerate([0.2, 0.2, 0.3, 2.0, 3.0, 4.0, 5.0, 6.0, 3.0, 2.5], start=1):
        watch.observe(step, 2.0, norm)
    assert watch.report().grad_spikes == 0 and watch.report().healthy
    for step, norm in enumerate([30.0, 40.0, 50.0, 60.0], start=11):  # after step 10: 10x the median, 4 times
        watch.observe(step, 2.0, norm)
    assert watch.report().grad_spikes == 4
    assert watch.report().issues == [
        "grad_norm_spikes: 4 norms above 5x the median 3 (largest 60, steps 11, 12, 13, 14)"
    ]


def spiky_run(val_losses: list[float]) -> HealthWatch:
    """The 20-step SmolLM2 smoke run's shape (issue 26): ~0.8 on reply batches, 4-5 on label batches after step
    10, with the val loss measured before training and at the given steps."""
    watch = HealthWatch(HealthConfig(min_loss_drop=0.0), first_rung=10, initial_val_loss=3.0)
    norms = [0.77, 0.8, 0.68, 0.69, 0.75, 0.82, 0.86, 0.81, 0.92, 0.8, 5.22, 4.5, 0.9, 4.2, 0.8, 4.4]
    for step, norm in enumerate(norms, start=1):
        watch.observe(step, 3.0, norm)
        if step % 8 == 0:
            watch.observe_evaluation(step, val_losses[step // 8 - 1])
    return watch


def test_gradient_spikes_the_validation_loss_shrugs_off_are_counted_not_flagged():
    learning = spiky_run([2.5, 1.2])  # the val loss keeps falling through 4 spikes
    assert (learning.report().grad_spikes, learning.report().healthy) == (4, True)
    harmed = spiky_run([2.5, 2.6])  # worse than its best after them
    assert harmed.report().issues == [
        "grad_norm_spikes: 4 norms above 5x the median 0.815 (largest 5.22, steps 11, 12, 14, 16), and val loss "
        "2.600 at step 16 (best 2.500)"
    ]


def test_a_loss_that_shoots_up_is_flagged_at_once_before_the_judged_step():
    watch = HealthWatch(HealthConfig(), first_rung=10, initial_val_loss=4.0)
    watch.observe_evaluation(2, 4.4)  # +10%: early noise, judged later
    assert watch.report().healthy
    watch.observe_evaluation(3, 6.5)  # +62%
    assert watch.report().issues == [
        "loss_diverging: val loss 4.000 before training -> 6.500 at step 3 (+62.5%, at most +50.0%)"
    ]
