"""A training job: what it trains, and the searched params it takes."""

from __future__ import annotations

from tunegate.config.train import TrainConfig
from tunegate.training.job import TrainingJob


def test_a_job_sets_searched_params_with_their_types():
    recipe = TrainConfig()
    job = TrainingJob.model_construct(recipe=recipe)
    searched = job.with_params({"lora_r": 16.0, "learning_rate": 2})
    assert (searched.recipe.lora_r, searched.recipe.learning_rate) == (16, 2.0)
    assert isinstance(searched.recipe.lora_r, int) and isinstance(searched.recipe.learning_rate, float)
    assert job.recipe == recipe  # the job itself is unchanged
