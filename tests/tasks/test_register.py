import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from tasks.evaluate import EvalResult
from tasks.register import promotion_decision, register_model, registry_lock
from tests.conftest import REPO
from tunegate.config import load_config
from tunegate.fingerprint import fingerprint_directory
from tunegate.model_loading import load_causal_lm
from tunegate.refs import write_table
from tunegate.tracking import mlflow_client, open_pipeline_run

BASE_MODEL = REPO / "demo" / "base_model"


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
    config = load_config(REPO / "deployments" / "demo.yaml", [f"home={tmp_path}"])
    tracking = open_pipeline_run(config, "flow-run-id", "concurrent-test", "data-fp")
    assert tracking["uri"] == f"sqlite:///{tmp_path / 'mlflow.db'}"  # no store leaks in from an earlier test
    rows = write_table(pd.DataFrame({"prompt": ["a"], "completion": ["billing"]}), tmp_path / "test.parquet")
    adapters = [lora_adapter(tmp_path / f"adapter-{seed}", seed) for seed in (1, 2)]
    return config, tracking, rows, adapters


def register(config, tracking, rows, adapter_dir: str, tuned: float):
    return register_model(
        adapter_dir,
        fingerprint_directory(adapter_dir),
        evaluation(0.1, tuned),
        rows,
        config.model.model_copy(update={"base": str(BASE_MODEL)}),
        config.registry,
        "concurrent-model",
        {"prefect_flow_run_id": "flow-run-id"},
        tracking,
    )


def test_two_registrations_at_once_get_distinct_versions_and_the_champion_ends_on_the_better(registry_setup):
    config, tracking, rows, (worse_adapter, better_adapter) = registry_setup
    with ThreadPoolExecutor(2) as pool:
        worse = pool.submit(register, config, tracking, rows, worse_adapter, 0.5)
        better = pool.submit(register, config, tracking, rows, better_adapter, 0.7)
        results = [worse.result(), better.result()]
    assert sorted(result.version for result in results) == ["1", "2"]
    client = mlflow_client(tracking["uri"])
    champion = client.get_model_version_by_alias("concurrent-model", "champion")
    assert str(champion.version) == results[1].version
    assert champion.tags["eval.accuracy"] == "0.700000"
    # Whichever finished second saw the first as champion: exactly one decision names a champion to beat.
    reasons = sorted(result.reason for result in results)
    assert sum("champion v" in reason for reason in reasons) == 1


def test_the_alias_moves_only_while_holding_the_registry_lock(registry_setup):
    config, tracking, rows, (adapter, _) = registry_setup
    client = mlflow_client(tracking["uri"])
    with ThreadPoolExecutor(1) as pool:
        with registry_lock("concurrent-model"):
            pending = pool.submit(register, config, tracking, rows, adapter, 0.5)
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
