"""Evaluate: the fine-tuned model against its base model on the same held-out rows with the same prompts.

For each model: mean loss and perplexity on target tokens, and greedy generations (batched, left-padded)
scored by the task metric (`tunegate.evaluation.scoring`): accuracy (plus macro-F1 and F1 per label) on labelled
rows when the task has labels, ROUGE-L (plus exact match) on free-text rows. Labelled rows are also scored by label
likelihood (`tunegate.evaluation.label_likelihood`: the likeliest label after the prompt), reported as
`likelihood_accuracy` and `likelihood_macro_f1`; `task.label_scoring` says which of the two the delta and the gate
use. The delta of the task metric comes with a paired bootstrap 95% interval over rows, and a few side-by-side
examples. The per-row scores of both models are written next to the rows, so the registry gate can compare a
candidate with the champion row by row.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
from prefect import task

from tunegate.config.registry import EvalConfig, EvaluationSettings, RetentionSettings, retention_path
from tunegate.core.fingerprint import fingerprint_value
from tunegate.core.refs import AdapterRef, TableRef, write_table, write_text_atomic
from tunegate.evaluation.drift import (
    DriftResult,
    answer_logprobs,
    drift_result,
    ended_answers,
    first_tokens_agree,
    per_token_drop,
    retention_prompts,
)
from tunegate.evaluation.label_likelihood import label_choices, label_logprobs, label_token_counts
from tunegate.evaluation.preference import REFERENCE_COLUMNS, preference_result, reply_logprobs
from tunegate.evaluation.results import EvalResult, EvaluationOutput, Predictions
from tunegate.evaluation.scoring import (
    generate,
    mean_or_nan,
    new_token_budget,
    normalize_answer,
    paired_bootstrap_ci,
    scores_for_metric,
    task_metric_name,
)
from tunegate.lm.model_loading import is_adapter, load_causal_lm, load_tokenizer, load_trained_model
from tunegate.lm.prompting import PromptFormat
from tunegate.lm.sft_data import target_logprobs
from tunegate.runtime.caching import stage_cache_policy
from tunegate.runtime.stages import stage_directory

SIDE_BY_SIDE_EXAMPLES = 5


def per_row_scores(rows: pd.DataFrame, generations: list[str], labels: list[str] | None) -> tuple[str, np.ndarray]:
    """(task metric name, one score per row): exact label match for label tasks, ROUGE-L F1 otherwise."""
    metric = task_metric_name(labels)
    return metric, scores_for_metric(metric, rows, generations)


def summary_metrics(rows: pd.DataFrame, predictions: Predictions, labels: list[str] | None) -> dict[str, float]:
    """The task metric, its companion (macro-F1 or exact match), loss and perplexity for one model; for labelled
    tasks also the label-likelihood accuracy and macro-F1 when they were scored."""
    name, scores = per_row_scores(rows, predictions.generations, labels)
    metrics = {name: mean_or_nan(scores), "loss": predictions.loss, "perplexity": safe_exp(predictions.loss)}
    if not labels:
        predicted = [normalize_answer(g) for g in predictions.generations]
        expected = [normalize_answer(c) for c in rows["completion"]]
        matches = [p == e for p, e in zip(predicted, expected, strict=True)]
        return {**metrics, "exact_match": float(np.mean(matches)) if matches else math.nan}
    metrics["macro_f1"] = macro_f1(rows, predictions.generations, labels)
    if predictions.label_choices is not None:
        metrics["likelihood_accuracy"] = mean_or_nan(scores_for_metric("accuracy", rows, predictions.label_choices))
        metrics["likelihood_macro_f1"] = macro_f1(rows, predictions.label_choices, labels)
    return metrics


def macro_f1(rows: pd.DataFrame, answers: list[str], labels: list[str]) -> float:
    """Macro-F1 of the answers over the label set (NaN for no rows)."""
    return float(label_f1(rows, answers, labels, average="macro")) if len(rows) else math.nan


def label_f1(rows: pd.DataFrame, answers: list[str], labels: list[str], average: str | None) -> Any:
    """scikit-learn's F1 of the normalised answers against the rows' completions over the label set."""
    from sklearn.metrics import f1_score

    predicted = [normalize_answer(g) for g in answers]
    expected = [normalize_answer(c) for c in rows["completion"]]
    names = [normalize_answer(x) for x in labels]
    return f1_score(expected, predicted, labels=names, average=average, zero_division=0)


def safe_exp(loss: float) -> float:
    """exp(loss) without overflow (capped at e^700); NaN stays NaN."""
    return math.exp(min(loss, 700.0)) if not math.isnan(loss) else math.nan


def f1_per_label(rows: pd.DataFrame, generations: list[str], labels: list[str]) -> dict[str, float]:
    """F1 of each label on these rows (0 for a label never predicted nor expected)."""
    if not len(rows):
        return {label: math.nan for label in labels}
    scores = label_f1(rows, generations, labels, average=None)
    return {label: round(float(score), 4) for label, score in zip(labels, scores, strict=True)}


def compare_models(
    rows: pd.DataFrame,
    base: Predictions,
    tuned: Predictions,
    labels: list[str] | None,
    seed: int = 0,
    label_scoring: str = "generation",
) -> EvalResult:
    """Metrics of both models, the delta of the task metric (on the answers `label_scoring` names) with its
    bootstrap interval, examples."""
    scoring = label_scoring if labels else "generation"
    name, base_scores = per_row_scores(rows, base.answers(scoring), labels)
    _, tuned_scores = per_row_scores(rows, tuned.answers(scoring), labels)
    examples = [
        {"prompt": str(row["prompt"])[:300], "expected": str(row["completion"]), "base": b, "finetuned": t}
        for row, b, t in zip(
            rows.head(SIDE_BY_SIDE_EXAMPLES).to_dict("records"), base.generations, tuned.generations, strict=False
        )
    ]
    return EvalResult(
        task_metric=name,
        rows=len(rows),
        label_scoring=scoring,
        base=summary_metrics(rows, base, labels),
        finetuned=summary_metrics(rows, tuned, labels),
        delta=mean_or_nan(tuned_scores - base_scores),
        delta_ci95=paired_bootstrap_ci(base_scores, tuned_scores, seed),
        examples=examples,
        per_label_f1=f1_per_label(rows, tuned.answers(scoring), labels) if labels else {},
        base_scores=base_scores.tolist(),
        finetuned_scores=tuned_scores.tolist(),
        exact_scores=None if labels else exact_match_scores(rows, base, tuned),
    )


def exact_match_scores(rows: pd.DataFrame, base: Predictions, tuned: Predictions) -> tuple[list[float], list[float]]:
    """Per-row normalised exact match of both models' generations (the label metric, on free text)."""
    return (
        scores_for_metric("accuracy", rows, base.generations).tolist(),
        scores_for_metric("accuracy", rows, tuned.generations).tolist(),
    )


def predict(
    model: Any,
    tokenizer: Any,
    prompt_format: PromptFormat,
    rows: pd.DataFrame,
    labels: list[str] | None,
    batch_size: int,
) -> Predictions:
    """Mean target-token loss (teacher forcing), greedy generations and, for labelled tasks, the likeliest label,
    for every row."""
    prompts = [prompt_format.format_row(row).prompt for row in rows.to_dict("records")]
    generations = generate(model, tokenizer, prompts, new_token_budget(tokenizer, labels), batch_size)
    if not labels or not set(rows["completion"]) <= set(labels):
        loss = target_token_loss(model, tokenizer, prompt_format, rows, batch_size)
        choices = label_choices(model, tokenizer, prompt_format, rows, labels, batch_size) if labels else None
        return Predictions(loss=loss, generations=generations, label_choices=choices)
    # Every row's target is one of the labels, so the label scores hold its loss too: one pass instead of two.
    scores = label_logprobs(model, tokenizer, prompt_format, rows, labels, batch_size)
    counts = label_token_counts(tokenizer, prompt_format, labels)
    expected = [labels.index(completion) for completion in rows["completion"]]
    nll = -sum(scores[row, label] for row, label in enumerate(expected))
    loss = float(nll / sum(counts[label] for label in expected)) if expected else math.nan
    return Predictions(loss=loss, generations=generations, label_choices=[labels[i] for i in scores.argmax(axis=1)])


def target_token_loss(
    model: Any, tokenizer: Any, prompt_format: PromptFormat, rows: pd.DataFrame, batch_size: int
) -> float:
    """Mean negative log-likelihood per target token over the rows (NaN for none)."""
    sums, counts = target_logprobs(model, tokenizer, prompt_format, rows, batch_size)
    return float(-sums.sum() / counts.sum()) if counts.sum() else math.nan


def evaluate_against_base(
    tuned_model: Any,
    tokenizer: Any,
    prompt_format: PromptFormat,
    rows: pd.DataFrame,
    labels: list[str] | None,
    batch_size: int = 16,
    seed: int = 0,
    base_model: Any | None = None,
    label_scoring: str = "generation",
) -> EvalResult:
    """Base and fine-tuned predictions on the same rows, compared. The base is `base_model` when given
    (full fine-tuning), else the tuned PEFT model with its adapters disabled."""
    with base_view(tuned_model, base_model) as base_weights:
        base = predict(base_weights, tokenizer, prompt_format, rows, labels, batch_size)
    tuned = predict(tuned_model, tokenizer, prompt_format, rows, labels, batch_size)
    return compare_models(rows, base, tuned, labels, seed, label_scoring)


@contextmanager
def base_view(tuned_model: Any, base_model: Any | None) -> Iterator[Any]:
    """The base to compare with: `base_model` when given (whole fine-tuned weights), else the tuned PEFT model
    with its adapters disabled for the duration."""
    if base_model is not None:
        yield base_model
        return
    with tuned_model.disable_adapter():
        yield tuned_model


def evaluation_rows(test: pd.DataFrame, labels: list[str] | None, max_rows: int) -> pd.DataFrame:
    """Rows the task metric is measured on: labelled rows for a label task, else every row; the first max_rows."""
    chosen = test[test["labelled"].astype(bool)] if labels else test
    return chosen.head(max_rows).reset_index(drop=True)


def evaluate_run_name() -> str:
    """`evaluate 3f9c2a1b`: the first 8 hex digits of the evaluated weights' fingerprint."""
    from prefect.runtime import task_run

    return f"evaluate {task_run.parameters['adapter'].fingerprint[:8]}"


@task(cache_policy=stage_cache_policy())
def answer_retention_prompts(settings: RetentionSettings) -> TableRef | None:
    """The base's greedy answers to the retention prompts, with their summed log-likelihood and token count under
    the base: the references every candidate's drift is measured on (cached per base and retention set). None when
    eval.retention.rows is 0."""
    retention, model = settings.retention, settings.model
    if retention.rows == 0:
        return None
    out_dir = stage_directory(
        settings.home, "eval/retention", __file__, settings.retention_fingerprint, fingerprint_value([model, retention])
    )
    prompts = retention_prompts(retention_path(retention), retention.rows)
    tokenizer = load_tokenizer(model.base, model.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    base = load_causal_lm(model.base, model.trust_remote_code)
    prompt_format = PromptFormat.from_tokenizer(tokenizer, model.system_prompt)
    formatted = [prompt_format.format_prompt(prompt) for prompt in prompts["prompt"]]
    answers = generate(base, tokenizer, formatted, retention.max_new_tokens, settings.batch_size)
    references = prompts.assign(completion=answers, ended=ended_answers(tokenizer, answers, retention.max_new_tokens))
    sums, counts = answer_logprobs(base, tokenizer, prompt_format, references, settings.batch_size)
    return write_table(references.assign(base_logprob=sums, tokens=counts), out_dir / "references.parquet")


def measure_drift(
    tuned: Any, tokenizer: Any, prompt_format: PromptFormat, references: pd.DataFrame, evaluation: EvalConfig
) -> DriftResult:
    """The candidate's drift from the base on the references: the base's answers scored under the candidate, and
    the candidate's own greedy answers against the base's first tokens."""
    tuned_sums, _ = answer_logprobs(tuned, tokenizer, prompt_format, references, evaluation.batch_size)
    base_per_token, tuned_per_token = per_token_drop(
        references["base_logprob"].to_numpy(), tuned_sums, references["tokens"].to_numpy()
    )
    formatted = [prompt_format.format_prompt(prompt) for prompt in references["prompt"]]
    answers = generate(tuned, tokenizer, formatted, evaluation.retention.max_new_tokens, evaluation.batch_size)
    tokens = evaluation.retention.match_tokens
    matches = first_tokens_agree(tokenizer, references["completion"].tolist(), answers, tokens)
    return drift_result(base_per_token, tuned_per_token, matches, tokens, evaluation.seed)


@task(task_run_name=evaluate_run_name, cache_policy=stage_cache_policy())
def evaluate_final_model(
    adapter: AdapterRef, test: TableRef, settings: EvaluationSettings, retention: TableRef | None = None
) -> EvaluationOutput:
    """Base vs fine-tuned on the held-out test rows, and the fine-tuned model's drift from the base on the
    retention references (when given); writes the rows and the result under home/eval/<key>/."""
    from transformers import AutoTokenizer

    model, task_config, evaluation = settings.model, settings.task, settings.evaluation
    out_dir = stage_directory(
        settings.home,
        "eval/eval",
        __file__,
        adapter.fingerprint,
        test.fingerprint,
        fingerprint_value([model, task_config, evaluation]),
        retention.fingerprint if retention else "no-retention",
    )
    rows = evaluation_rows(test.read(), task_config.labels, evaluation.max_rows)
    rows_ref = write_table(rows, out_dir / "eval_rows.parquet")
    tokenizer = AutoTokenizer.from_pretrained(adapter.path)
    tuned = load_trained_model(adapter.path, model.base, model.trust_remote_code)
    # An adapter's base is the same model with its adapters disabled; whole weights need the base loaded apart.
    separate_base = None if is_adapter(adapter.path) else load_causal_lm(model.base, model.trust_remote_code)
    prompt_format = PromptFormat.load(adapter.path)
    result = evaluate_against_base(
        tuned,
        tokenizer,
        prompt_format,
        rows,
        task_config.labels,
        evaluation.batch_size,
        seed=evaluation.seed,
        base_model=separate_base,
        label_scoring=task_config.label_scoring,
    )
    reference_logprobs: dict[str, Any] = {}
    if settings.dpo_beta is not None:  # DPO: judged on the preference pairs against its reference, the base
        with base_view(tuned, separate_base) as reference_model:
            reference = reply_logprobs(reference_model, tokenizer, prompt_format, rows, evaluation.batch_size)
        policy = reply_logprobs(tuned, tokenizer, prompt_format, rows, evaluation.batch_size)
        result = preference_result(result, reference, policy, settings.dpo_beta, evaluation.seed)
        reference_logprobs = dict(zip(REFERENCE_COLUMNS, reference, strict=True))
    if retention is not None:
        drift = measure_drift(tuned, tokenizer, prompt_format, retention.read(), evaluation)
        result = result.model_copy(update={"drift": drift})
    write_text_atomic(out_dir / "evaluation.json", result.model_dump_json(indent=2))
    scores = pd.DataFrame(
        {"base": result.base_scores, "finetuned": result.finetuned_scores, **reference_logprobs}, dtype=float
    )
    return EvaluationOutput(result=result, rows=rows_ref, scores=write_table(scores, out_dir / "row_scores.parquet"))
