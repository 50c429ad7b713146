from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from tests.fixtures.registry import BASE_MODEL, register, wait_for_version
from tunegate.core.refs import AdapterRef
from tunegate.registry.versions import registry_lock
from tunegate.runtime.tracking import mlflow_client

# make test-fast leaves it out: trains, evaluates and registers versions in a real MLflow registry
pytestmark = pytest.mark.slow

# --- Concurrent registrations against one real MLflow registry (SQLite) and the real Prefect server ---


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


def test_exports_within_the_drop_are_registered_beside_their_adapter_version_once(registry_setup, tmp_path):
    from tasks.register import register_exports
    from tunegate.lm.model_loading import load_tokenizer
    from tunegate.lm.prompting import PromptFormat
    from tunegate.registry.exports import merged_model, save_whole
    from tunegate.registry.results import ExportedBuild, ExportResult
    from tunegate.registry.serving import registered_model_answers

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
