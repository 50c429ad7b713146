import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.register import Champion, promotion_decision, register_model, registry_lock
from tests.conftest import REPO
from tunegate.config import RegistryConfig, load_config
from tunegate.health import HealthReport
from tunegate.model_loading import load_causal_lm
from tunegate.refs import AdapterRef, write_table
from tunegate.scoring import paired_bootstrap_ci
from tunegate.stage_results import EvalResult, EvaluationOutput, TrainedModel, TrainResult
from tunegate.tracking import mlflow_client, open_pipeline_run

BASE_MODEL = REPO / "demo" / "base_model"


def evaluation(base: np.ndarray, tuned: np.ndarray) -> EvalResult:
    base_mean = float(base.mean()) if len(base) else math.nan
    tuned_mean = float(tuned.mean()) if len(tuned) else math.nan
    return EvalResult(
        task_metric="accuracy",
        rows=len(tuned),
        base={"accuracy": base_mean, "loss": 3.0},
        finetuned={"accuracy": tuned_mean, "loss": 1.0},
        delta=tuned_mean - base_mean,
        delta_ci95=paired_bootstrap_ci(base, tuned, 0),
        examples=[],
    )


def scores(ones: int, rows: int = 20) -> np.ndarray:
    return np.array([1.0] * ones + [0.0] * (rows - ones))


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


# --- Concurrent registrations against one real MLflow registry (SQLite) and the real Prefect server ---


def lora_adapter(path: Path, seed: int) -> str:
    """An untrained LoRA adapter on the demo base (distinct random A matrices per seed)."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(load_causal_lm(str(BASE_MODEL), False), LoraConfig(r=4, target_modules=["q_proj"]))
    model.save_pretrained(path)
    return str(path)


@pytest.fixture
def registry_setup(tmp_path):
    config = load_config(REPO / "deployments" / "demo_tiny.yaml", [f"home={tmp_path}"])
    tracking = open_pipeline_run(config, "flow-run-id", "concurrent-test", "data-fp")
    assert tracking.uri == f"sqlite:///{tmp_path / 'mlflow.db'}"  # no store leaks in from an earlier test
    rows = write_table(pd.DataFrame({"prompt": ["a"] * 10, "completion": ["billing"] * 10}), tmp_path / "test.parquet")
    adapters = [lora_adapter(tmp_path / f"adapter-{seed}", seed) for seed in (1, 2)]
    return config, tracking, rows, adapters


def register(config, tracking, rows, adapter_dir: str, right: int):
    """Register `adapter_dir` as scoring `right` of the 10 test rows (the base scores none)."""
    base, tuned = scores(0, 10), scores(right, 10)
    frame = pd.DataFrame({"base": base, "finetuned": tuned})
    scores_ref = write_table(frame, Path(adapter_dir).parent / f"{Path(adapter_dir).name}-scores-{right}.parquet")
    return register_model(
        candidate=candidate(adapter_dir),
        evaluated=EvaluationOutput(result=evaluation(base, tuned), rows=rows, scores=scores_ref),
        model=config.model.model_copy(update={"base": str(BASE_MODEL)}),
        registry=config.registry.model_copy(update={"model_name": "concurrent-model"}),
        lineage={"prefect_flow_run_id": "flow-run-id"},
        tracking=tracking,
    )


def candidate(adapter_dir: str) -> TrainedModel:
    """A healthy candidate for an adapter directory (its training numbers do not matter to registration)."""
    result = TrainResult(
        adapter_dir=adapter_dir,
        method="lora",
        steps=4,
        objective="accuracy",
        best_objective=1.0,
        best_step=4,
        best_val_loss=1.0,
        val_loss_history=[(4, 1.0)],
        objective_history=[(4, 1.0)],
        trainable_parameters=1000,
        train_tokens_seen=100,
        tokens_per_second=10.0,
        peak_memory_mb=1.0,
        resumed_from_step=0,
        overlength_rows=0,
        stopped_early=False,
        health=HealthReport(),
    )
    return TrainedModel(result=result, adapter=AdapterRef.of(adapter_dir, "lora"), source="trial 0")


def test_two_registrations_at_once_get_distinct_versions_and_the_champion_ends_on_the_better(registry_setup):
    config, tracking, rows, (worse_adapter, better_adapter) = registry_setup
    with ThreadPoolExecutor(2) as pool:
        # 5 and 10 right of 10: the difference's interval is clear of 0 whichever registers first.
        worse = pool.submit(register, config, tracking, rows, worse_adapter, 5)
        better = pool.submit(register, config, tracking, rows, better_adapter, 10)
        results = [worse.result(), better.result()]
    assert sorted(result.version for result in results) == ["1", "2"]
    client = mlflow_client(tracking.uri)
    champion = client.get_model_version_by_alias("concurrent-model", "champion")
    assert str(champion.version) == results[1].version
    assert champion.tags["eval.accuracy"] == "1.000000"
    assert champion.tags["eval.row_scores"] == f"eval/row_scores-v{champion.version}.json"
    # Whichever finished second saw the first as champion: exactly one decision names a champion to beat.
    reasons = sorted(result.reason for result in results)
    assert sum("champion v" in reason for reason in reasons) == 1


def test_the_alias_moves_only_while_holding_the_registry_lock(registry_setup):
    config, tracking, rows, (adapter, _) = registry_setup
    client = mlflow_client(tracking.uri)
    with ThreadPoolExecutor(1) as pool:
        with registry_lock("concurrent-model"):
            pending = pool.submit(register, config, tracking, rows, adapter, 5)
            version = wait_for_version(client, "concurrent-model", pending)
            # The version is logged and tagged, but with the lock held here its alias cannot be set.
            assert client.get_model_version("concurrent-model", version).aliases == []
            assert not pending.done()
        assert pending.result().aliases == ["champion"]
    assert client.get_model_version("concurrent-model", version).aliases == ["champion"]


def wait_for_version(client, model_name: str, pending) -> str:
    """Poll until the registration has created its version and tagged it (up to 120 s)."""
    for _ in range(600):
        versions = client.search_model_versions(f"name = '{model_name}'")
        if versions and "eval.accuracy" in versions[0].tags:
            return str(versions[0].version)
        assert not pending.done(), pending.exception()
        time.sleep(0.2)
    raise AssertionError("the registration never created its version")


def test_exports_within_the_drop_are_registered_beside_their_adapter_version_once(registry_setup, tmp_path):
    from tasks.register import register_exports
    from tunegate.exports import merged_model, save_whole
    from tunegate.model_loading import load_tokenizer
    from tunegate.prompting import PromptFormat
    from tunegate.serving import registered_model_answers
    from tunegate.stage_results import ExportedBuild, ExportResult

    config, tracking, rows, (adapter, _) = registry_setup
    tokenizer = load_tokenizer(str(BASE_MODEL))  # what training saves beside an adapter
    tokenizer.save_pretrained(adapter)
    PromptFormat.from_tokenizer(tokenizer).save(Path(adapter))
    registered = register(config, tracking, rows, adapter, 10)
    save_whole(merged_model(adapter, str(BASE_MODEL)), tokenizer, PromptFormat.load(adapter), tmp_path / "merged")
    weights = AdapterRef.of(tmp_path / "merged", "full")
    measured = {"task_metric": 1.0, "metric_drop": 0.0, "p50_ms": 20.0, "p95_ms": 30.0, "size_mb": 9.0}
    builds = ExportResult(
        task_metric="accuracy",
        base_model=str(BASE_MODEL),
        builds=[
            ExportedBuild(name="adapter", weights=AdapterRef.of(adapter, "lora"), reason="the adapter as evaluated"),
            ExportedBuild(name="merged", weights=weights, registrable=True, reason="within", **measured),
            ExportedBuild(
                name="int8",
                weights=weights,
                quantization="int8_dynamic",
                registrable=False,
                reason="accuracy 0.900 vs adapter 1.000 (drop +0.100, beyond export.max_metric_drop 0.010)",
                **{**measured, "task_metric": 0.9, "metric_drop": 0.1},
            ),
        ],
    )
    first = register_exports.fn(builds, registered, tracking)
    again = register_exports.fn(builds, registered, tracking)  # a retried stage registers nothing twice
    assert first == again
    adapter_build, merged, int8 = first.builds
    assert (adapter_build.version, merged.version, int8.version) == (None, "2", None)
    assert merged.alias == "champion-merged" and merged.reason == "registered as v2 (champion-merged): within"
    assert int8.reason == builds.builds[2].reason
    client = mlflow_client(tracking.uri)
    version = client.get_model_version_by_alias("concurrent-model", "champion-merged")
    assert {key: version.tags[key] for key in ("export", "export_of_version", "quantization", "latency_p95_ms")} == {
        "export": "merged",
        "export_of_version": "1",
        "quantization": "none",
        "latency_p95_ms": "30.00",
    }
    assert [str(v.version) for v in client.search_model_versions("name = 'concurrent-model'")] == ["2", "1"]
    # The merged version answers from its own whole weights as the adapter version does.
    test_rows = pd.DataFrame({"prompt": ["My parcel never arrived.", "I was charged twice."]})
    assert registered_model_answers(
        "models:/concurrent-model@champion-merged", test_rows, False, tracking.uri
    ) == registered_model_answers("models:/concurrent-model@champion", test_rows, False, tracking.uri)


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
