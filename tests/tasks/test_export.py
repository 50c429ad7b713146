"""Exports: a trained LoRA adapter merged and int8-quantized, each scored on the evaluation's rows and timed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from tasks.evaluate import evaluate_final_model
from tasks.export import MEBIBYTE, export_builds
from tests.fixtures.training import BASE_MODEL, ticket_rows
from tunegate.config.data import TaskConfig
from tunegate.config.registry import EvalConfig, EvaluationSettings, ExportConfig, ExportSettings
from tunegate.config.train import ModelConfig, TrainConfig
from tunegate.core.refs import AdapterRef, write_table
from tunegate.evaluation.results import EvalResult, EvaluationOutput
from tunegate.lm.model_loading import load_trained_model
from tunegate.registry.exports import load_build
from tunegate.training.budget import fixed_plan
from tunegate.training.job import run_training

# make test-fast leaves it out: trains, then builds, scores and times the exports
pytestmark = pytest.mark.slow

LABELS = ["billing", "shipping", "returns", "technical", "account", "product"]
BOTH = ExportConfig(merged=True, int8=True, latency_rows=4)
# Two LoRA steps on the demo model pick the right label by likelihood on 7 of 24 test tickets.
LIKELIHOOD_ACCURACY = 7 / 24


def settings_for(home: Path, export: ExportConfig = BOTH) -> ExportSettings:
    return ExportSettings(
        model=ModelConfig(base=str(BASE_MODEL)),
        task=TaskConfig(labels=LABELS),
        evaluation=EvalConfig(max_rows=24, batch_size=8),
        home=str(home),
        export=export,
    )


def trained(home: Path, method: str, rows: int, steps: int, learning_rate: float) -> str:
    """The adapter directory of `steps` steps of `method` on `rows` demo tickets (batch 8)."""
    recipe = TrainConfig(method=method, save_steps=steps, batch_size=8, learning_rate=learning_rate, warmup_ratio=0.0)
    model = ModelConfig(base=str(BASE_MODEL))
    plan = fixed_plan(steps, [steps])
    return run_training(ticket_rows(rows), ticket_rows(16, skip=rows), model, recipe, plan, home / "train").adapter_dir


@pytest.fixture(scope="module")
def evaluated_adapter(tmp_path_factory):
    """A LoRA adapter trained for 20 steps (0.25 accuracy on 24 test tickets, the base 0) and its evaluation."""
    home = tmp_path_factory.mktemp("export")
    adapter_dir = trained(home, "lora", rows=160, steps=20, learning_rate=5e-3)
    test = write_table(ticket_rows(24, skip=200).assign(labelled=True).reset_index(drop=True), home / "test.parquet")
    adapter = AdapterRef.of(adapter_dir, "lora")
    settings = settings_for(home)
    evaluation = EvaluationSettings.model_validate(settings.model_dump(exclude={"export"}))
    return home, adapter, evaluate_final_model.fn(adapter, test, evaluation)


def test_merged_and_int8_builds_are_scored_on_the_evaluation_rows_and_timed(evaluated_adapter):
    home, adapter, evaluated = evaluated_adapter
    result = export_builds.fn(adapter, evaluated, settings_for(home))
    adapter_build, merged, int8 = result.builds
    assert [build.name for build in result.builds] == ["adapter", "merged", "int8"]
    assert evaluated.result.finetuned["accuracy"] == adapter_build.task_metric == 0.25
    # Merging adds B·A into the weights: greedy answers, hence the metric, are the adapter's.
    assert (merged.task_metric, merged.metric_drop, merged.registrable) == (0.25, 0.0, True)
    assert merged.reason == "accuracy 0.250 vs adapter 0.250 (drop +0.000, within export.max_metric_drop 0.010)"
    assert int8.quantization == "int8_dynamic" and int8.weights == merged.weights
    assert int8.registrable == (int8.metric_drop <= 0.01)
    merged_dir = Path(merged.weights.path)
    assert sorted(p.name for p in merged_dir.iterdir()) == [
        "chat_template.jinja",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "prompt_format.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert merged.size_mb * MEBIBYTE == (merged_dir / "model.safetensors").stat().st_size
    # The adapter serves its whole base beside it; int8 linear weights are a quarter of fp32 (the embeddings
    # stay fp32), so the build is well under two thirds of the merged one.
    assert adapter_build.size_mb > merged.size_mb > 1.5 * int8.size_mb
    assert all(0 < build.p50_ms <= build.p95_ms for build in result.builds)
    # What the registry will serve from the merged weights answers as the adapter does, logit for logit.
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    with torch.no_grad():
        adapter_logits = load_trained_model(adapter.path, str(BASE_MODEL)).eval()(ids).logits
        merged_logits = load_build(merged_dir, str(BASE_MODEL), False, None).eval()(ids).logits
        int8_model = load_build(merged_dir, str(BASE_MODEL), False, "int8_dynamic")
        int8_logits = int8_model(ids).logits
    torch.testing.assert_close(merged_logits, adapter_logits, rtol=1e-4, atol=1e-4)
    assert type(int8_model.lm_head).__module__.startswith("torch.ao.nn.quantized.dynamic")
    assert (int8_logits.argmax(-1) == adapter_logits.argmax(-1)).float().mean() >= 0.6


def test_a_build_beyond_the_metric_drop_is_refused_with_its_numbers(evaluated_adapter):
    home, adapter, evaluated = evaluated_adapter
    # As if the adapter had scored 0.95: the builds' 0.25 is 0.70 below it, far beyond the 0.01 allowed.
    claimed = evaluated.result.model_copy(update={"finetuned": {**evaluated.result.finetuned, "accuracy": 0.95}})
    result = export_builds.fn(adapter, evaluated.model_copy(update={"result": claimed}), settings_for(home))
    merged, int8 = result.exports()
    assert (merged.registrable, int8.registrable) == (False, False)
    assert merged.reason == "accuracy 0.250 vs adapter 0.950 (drop +0.700, beyond export.max_metric_drop 0.010)"
    # int8 arithmetic can round differently on another CPU's kernels: its own score, the same verdict.
    assert int8.reason == (
        f"accuracy {int8.task_metric:.3f} vs adapter 0.950 (drop {int8.metric_drop:+.3f}, beyond "
        "export.max_metric_drop 0.010)"
    )


def test_under_likelihood_scoring_the_builds_are_held_to_the_adapters_likelihood_accuracy(tmp_path):
    # Two steps: the adapter does not answer with labels yet (greedy accuracy 0), but its likeliest labels score.
    adapter = AdapterRef.of(trained(tmp_path, "lora", rows=16, steps=2, learning_rate=5e-3), "lora")
    test = write_table(
        ticket_rows(24, skip=200).assign(labelled=True).reset_index(drop=True), tmp_path / "test.parquet"
    )
    settings = settings_for(tmp_path).model_copy(update={"task": TaskConfig(labels=LABELS, label_scoring="likelihood")})
    evaluation = EvaluationSettings.model_validate(settings.model_dump(exclude={"export"}))
    evaluated = evaluate_final_model.fn(adapter, test, evaluation)
    greedy, likelihood = (evaluated.result.finetuned[name] for name in ("accuracy", "likelihood_accuracy"))
    assert (greedy, likelihood) == (0.0, LIKELIHOOD_ACCURACY)
    result = export_builds.fn(adapter, evaluated, settings)
    adapter_build, merged, _ = result.builds
    # The merged build's likeliest labels are the adapter's: scored the same way, it loses nothing (by greedy
    # answers it would have been held to 0.0).
    assert (result.task_metric, adapter_build.task_metric) == ("likelihood_accuracy", likelihood)
    assert (merged.task_metric, merged.metric_drop, merged.registrable) == (likelihood, 0.0, True)
    assert merged.reason == (
        f"likelihood_accuracy {likelihood:.3f} vs adapter {likelihood:.3f} (drop +0.000, within "
        "export.max_metric_drop 0.010)"
    )


def test_no_export_configured_builds_and_writes_nothing(evaluated_adapter):
    home, adapter, evaluated = evaluated_adapter
    result = export_builds.fn(adapter, evaluated, settings_for(home / "none", ExportConfig()))
    assert (result.task_metric, result.builds) == ("accuracy", [])
    assert not (home / "none").exists()


def test_virtual_tokens_have_no_whole_weights_to_merge_or_quantize(tmp_path):
    adapter_dir = trained(tmp_path, "prompt_tuning", rows=16, steps=2, learning_rate=3e-2)
    rows = write_table(ticket_rows(4, skip=40).assign(labelled=True).reset_index(drop=True), tmp_path / "rows.parquet")
    scores = write_table(pd.DataFrame({"base": [0.0] * 4, "finetuned": [0.0] * 4}), tmp_path / "scores.parquet")
    result = EvalResult(
        task_metric="accuracy",
        rows=4,
        base={"accuracy": 0.0},
        finetuned={"accuracy": 0.0},
        delta=0.0,
        delta_ci95=(0.0, 0.0),
        examples=[],
    )
    evaluated = EvaluationOutput(result=result, rows=rows, scores=scores)
    built = export_builds.fn(AdapterRef.of(adapter_dir, "prompt_tuning"), evaluated, settings_for(tmp_path))
    reason = "not built: prompt_tuning trains virtual tokens fed with the input, not weight deltas: nothing to merge"
    assert [(build.name, build.reason, build.registrable) for build in built.builds] == [
        ("adapter", "the adapter as evaluated", False),
        ("merged", reason, False),
        ("int8", reason, False),
    ]
    assert not list((tmp_path / "export").glob("*"))


def test_an_adapter_counts_its_base_whether_the_base_is_a_directory_or_loaded_from_a_hub_id():
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunegate.registry.exports import base_bytes, weight_bytes

    plain = AutoModelForCausalLM.from_pretrained(BASE_MODEL)
    weights = sum(tensor.numel() * tensor.element_size() for tensor in plain.parameters())
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(BASE_MODEL), LoraConfig(r=4, target_modules=["q_proj"]))
    # A Hub id (no such directory here) is sized from the loaded weights, the LoRA matrices left out.
    assert base_bytes("someone/some-model", model) == weights
    assert base_bytes(str(BASE_MODEL), model) == weight_bytes(BASE_MODEL)
    assert 0 < weight_bytes(BASE_MODEL) - weights < 64 * 1024  # the file adds its JSON header
