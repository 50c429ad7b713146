"""Model-version bookkeeping: an export's tags say which build of which adapter version it is and how it measured;
a registry lock's name is one per model."""

from __future__ import annotations

from tunegate.core.refs import AdapterRef
from tunegate.registry.results import ExportedBuild
from tunegate.registry.versions import export_tags, registry_lock_name, serving_requirements


def test_an_exports_tags_identify_it_and_carry_its_measurements():
    build = ExportedBuild(
        name="int8",
        quantization="int8_dynamic",
        task_metric=0.95,
        metric_drop=0.0125,
        p50_ms=41.234,
        p95_ms=60.0,
        size_mb=270.5,
        registrable=True,
        reason="within 0.0125 of the adapter",
    )
    weights = AdapterRef(path="/w", fingerprint="ab" * 32, method="lora")
    assert export_tags(build, weights, "accuracy", "3") == {
        "export": "int8",
        "export_of_version": "3",
        "weights_fingerprint": "ab" * 32,
        "quantization": "int8_dynamic",
        "eval.accuracy": "0.950000",
        "metric_drop": "0.012500",
        "latency_p50_ms": "41.23",
        "latency_p95_ms": "60.00",
        "size_mb": "270.50",
    }


def test_the_served_model_pins_only_installable_packages_never_the_project():
    pinned = [requirement.split("==") for requirement in serving_requirements()]
    assert [name for name, _ in pinned] == ["mlflow", "torch", "transformers", "peft", "pandas"]
    assert all(version for _, version in pinned)


def test_each_model_name_has_its_own_registry_lock_with_a_safe_name():
    assert registry_lock_name("support-demo") == "tunegate-registry-support-demo"
    assert registry_lock_name("team/support demo.v2") == "tunegate-registry-team-support-demo-v2"
