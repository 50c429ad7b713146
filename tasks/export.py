"""Export: deployable builds of the evaluated model, each scored on the evaluation's own test rows and timed
before it may be registered.

`export.merged` writes the LoRA adapter merged into the base (`merge_and_unload`: safetensors, tokenizer, prompt
format); `export.int8` is those whole weights (or a full fine-tune's) with every linear layer dynamically quantized
to int8 for CPU serving. Each build's task metric is measured on the rows the adapter was evaluated on, the way the
adapter's was (the same greedy generation, or the likeliest label under `task.label_scoring: likelihood`), and its
latency per request (p50/p95 of one row at a time on this machine) and the size of
the weights it serves are recorded next to the adapter's. A build may be registered only when its metric is within
`export.max_metric_drop` of the adapter's; the register stage then registers it as a version of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task

from tunegate.config.registry import ExportConfig, ExportSettings
from tunegate.core.fingerprint import fingerprint_value
from tunegate.core.refs import AdapterRef
from tunegate.evaluation.label_likelihood import label_choices
from tunegate.evaluation.preference import pair_scores, reference_logprobs
from tunegate.evaluation.results import EvaluationOutput
from tunegate.evaluation.scoring import generate, mean_or_nan, new_token_budget, scores_for_metric
from tunegate.lm.model_loading import is_adapter, load_trained_model
from tunegate.lm.prompting import PromptFormat
from tunegate.registry.exports import (
    INT8_DYNAMIC,
    base_bytes,
    latency_ms,
    merged_model,
    quantized_int8,
    save_whole,
    serialized_bytes,
    unmergeable_reason,
    weight_bytes,
)
from tunegate.registry.results import ExportedBuild, ExportResult
from tunegate.registry.serving import base_model_reference
from tunegate.runtime.caching import stage_cache_policy
from tunegate.runtime.stages import stage_directory

MEBIBYTE = 1024 * 1024


@dataclass
class BuildBench:
    """Scores and times builds on the evaluation's rows against the adapter's task metric."""

    rows: pd.DataFrame
    tokenizer: Any
    prompt_format: PromptFormat
    labels: list[str] | None
    metric: str
    adapter_metric: float
    export: ExportConfig
    batch_size: int
    reference: tuple[np.ndarray, np.ndarray] | None = None
    # task.label_scoring of the evaluation: a build is scored the way the adapter's task metric was (greedy answers,
    # or the likeliest label), so its drop compares like with like; `held_to` names that metric.
    label_scoring: str = "generation"
    held_to: str = ""

    def prompts(self) -> list[str]:
        return [self.prompt_format.format_row(row).prompt for row in self.rows.to_dict("records")]

    def scores(self, model: Any, prompts: list[str], budget: int) -> np.ndarray:
        """Per-row task metric of `model`: its generations scored, or (DPO) its preference on each pair against the
        reference log-probabilities the evaluation kept."""
        if self.reference is not None:
            return pair_scores(model, self.tokenizer, self.prompt_format, self.rows, self.reference, self.batch_size)
        if self.label_scoring == "likelihood" and self.labels:
            choices = label_choices(model, self.tokenizer, self.prompt_format, self.rows, self.labels, self.batch_size)
            return scores_for_metric(self.metric, self.rows, choices)
        generations = generate(model, self.tokenizer, prompts, budget, self.batch_size)
        return scores_for_metric(self.metric, self.rows, generations)

    def measured(
        self, name: str, model: Any, weights: AdapterRef, size_bytes: int, quantization: str | None = None
    ) -> ExportedBuild:
        budget = new_token_budget(self.tokenizer, self.labels)
        prompts = self.prompts()
        model.eval()
        if name == "adapter":  # scored by the evaluate stage on these rows with this generation
            value = self.adapter_metric
        else:
            value = mean_or_nan(self.scores(model, prompts, budget))
        p50, p95 = latency_ms(
            lambda prompt: generate(model, self.tokenizer, [prompt], budget, 1), prompts[: self.export.latency_rows]
        )
        drop = self.adapter_metric - value
        within = drop <= self.export.max_metric_drop
        verdict = "within" if within else "beyond"
        return ExportedBuild(
            name=name,
            weights=weights,
            quantization=quantization,
            task_metric=value,
            metric_drop=drop,
            p50_ms=p50,
            p95_ms=p95,
            size_mb=size_bytes / MEBIBYTE,
            registrable=within and name != "adapter",
            reason="the adapter as evaluated"
            if name == "adapter"
            else f"{self.held_to or self.metric} {value:.3f} vs adapter {self.adapter_metric:.3f} (drop {drop:+.3f}, "
            f"{verdict} export.max_metric_drop {self.export.max_metric_drop:.3f})",
        )


@task(cache_policy=stage_cache_policy())
def export_builds(adapter: AdapterRef, evaluated: EvaluationOutput, settings: ExportSettings) -> ExportResult:
    """The adapter and each configured export, scored and timed side by side; no builds when none is configured."""
    model_config, export = settings.model, settings.export
    base, trusted = base_model_reference(model_config.base), model_config.trust_remote_code
    metric, label_scoring = evaluated.result.task_metric, evaluated.result.label_scoring
    # The builds are held to the metric the gate used: `likelihood_accuracy` when labels are scored by likelihood.
    held_to = f"likelihood_{metric}" if label_scoring == "likelihood" else metric
    nothing = ExportResult(task_metric=held_to, base_model=base, trust_remote_code=trusted)
    if not (export.merged or export.int8):
        return nothing
    from transformers import AutoTokenizer

    bench = BuildBench(
        rows=evaluated.rows.read(),
        tokenizer=AutoTokenizer.from_pretrained(adapter.path),
        prompt_format=PromptFormat.load(adapter.path),
        labels=settings.task.labels,
        metric=metric,
        adapter_metric=evaluated.result.finetuned[held_to],
        export=export,
        batch_size=settings.evaluation.batch_size,
        reference=reference_logprobs(evaluated),
        label_scoring=label_scoring,
        held_to=held_to,
    )
    # An adapter serves its base too: both count in its size.
    adapter_model = load_trained_model(adapter.path, base, trusted)
    served_bytes = weight_bytes(adapter.path) + (base_bytes(base, adapter_model) if is_adapter(adapter.path) else 0)
    builds = [bench.measured("adapter", adapter_model, adapter, served_bytes)]
    merged_dir = stage_directory(
        settings.home, "export/merged", __file__, adapter.fingerprint, fingerprint_value(model_config)
    )
    whole = whole_weights(adapter, base, trusted, merged_dir)
    requested = [name for name, wanted in (("merged", export.merged), ("int8", export.int8)) if wanted]
    if isinstance(whole, str):
        return nothing.model_copy(update={"builds": builds + [skipped(name, whole) for name in requested]})
    # Loaded once from disk (what is registered): measured as merged, then copied into the int8 build.
    whole_model = load_trained_model(whole.path, base, trusted)
    if export.merged:
        builds.append(merged_build(adapter, whole, whole_model, bench))
    if export.int8:
        quantized = quantized_int8(whole_model)
        builds.append(bench.measured("int8", quantized, whole, serialized_bytes(quantized), INT8_DYNAMIC))
    return nothing.model_copy(update={"builds": builds})


def whole_weights(adapter: AdapterRef, base: str, trusted: bool, merged_dir: Path) -> AdapterRef | str:
    """The trained model as whole weights on disk (the LoRA adapter merged into its base in `merged_dir`, or a
    full fine-tune as saved), or why there are none (the virtual-token methods)."""
    if not is_adapter(adapter.path):
        return adapter
    reason = unmergeable_reason(adapter.path, adapter.method)
    if reason:
        return reason
    from transformers import AutoTokenizer

    tokenizer, prompt_format = AutoTokenizer.from_pretrained(adapter.path), PromptFormat.load(adapter.path)
    save_whole(merged_model(adapter.path, base, trusted), tokenizer, prompt_format, merged_dir)
    return AdapterRef.of(merged_dir, "full")


def merged_build(adapter: AdapterRef, whole: AdapterRef, whole_model: Any, bench: BuildBench) -> ExportedBuild:
    if whole.path == adapter.path:
        return skipped("merged", unmergeable_reason(adapter.path, adapter.method) or "")
    return bench.measured("merged", whole_model, whole, weight_bytes(whole.path))


def skipped(name: str, reason: str) -> ExportedBuild:
    return ExportedBuild(name=name, reason=f"not built: {reason}")
