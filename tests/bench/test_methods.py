"""The methods bench: each row's config loads on both demo configs, and DPO's row trains on the preference pairs
from the same base, judged the way a DPO run is."""

from __future__ import annotations

import pytest

from bench.methods import METHODS, method_overrides
from tests.conftest import REPO
from tunegate.config.loading import load_config


@pytest.mark.parametrize("config", ["demo_tiny.yaml", "demo.yaml"])
def test_every_methods_row_is_a_config_the_pipeline_accepts_on_the_same_base(config):
    path = REPO / "deployments" / config
    plain = load_config(path)
    loaded = {method: load_config(path, method_overrides(method)) for method in METHODS}
    assert {method: pipeline.train.method for method, pipeline in loaded.items()} == dict(
        zip(METHODS, ["lora", "full", "prompt_tuning", "prefix_tuning", "p_tuning", "lora"], strict=True)
    )
    assert {pipeline.model.base for pipeline in loaded.values()} == {plain.model.base}
    assert {pipeline.train.max_steps for pipeline in loaded.values()} == {plain.train.max_steps}
    dpo = loaded["dpo"]
    assert (dpo.train.objective, dpo.objective(), dpo.task.labels) == ("dpo", "val_loss", None)
    assert [source.path for source in dpo.data.sources] == ["demo/data/preferences.jsonl"]
    # DPO's default range, a tenth of LoRA's; LoRA keeps the config's own range.
    assert dpo.sweep.learning_rate_range("lora", "dpo") == pytest.approx((1e-5, 1e-4), rel=1e-12)
    assert loaded["lora"].sweep.learning_rate_range("lora") == plain.sweep.learning_rate_range("lora")
