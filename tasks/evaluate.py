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

from typing import Any

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
from tunegate.evaluation.predictions import base_view, evaluate_against_base, evaluation_rows
from tunegate.evaluation.preference import REFERENCE_COLUMNS, preference_result, reply_logprobs
from tunegate.evaluation.results import EvaluationOutput
from tunegate.evaluation.scoring import (
    generate,
)
from tunegate.lm.model_loading import (
    is_adapter,
    load_causal_lm,
    load_tokenizer,
    load_trained_model,
    merged_for_inference,
)
from tunegate.lm.prompting import PromptFormat
from tunegate.runtime.caching import stage_cache_policy
from tunegate.runtime.stages import stage_directory


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
        with merged_for_inference(tuned) as merged:
            policy = reply_logprobs(merged, tokenizer, prompt_format, rows, evaluation.batch_size)
        result = preference_result(result, reference, policy, settings.dpo_beta, evaluation.seed)
        reference_logprobs = dict(zip(REFERENCE_COLUMNS, reference, strict=True))
    if retention is not None:
        with merged_for_inference(tuned) as merged:
            drift = measure_drift(merged, tokenizer, prompt_format, retention.read(), evaluation)
        result = result.model_copy(update={"drift": drift})
    write_text_atomic(out_dir / "evaluation.json", result.model_dump_json(indent=2))
    scores = pd.DataFrame(
        {"base": result.base_scores, "finetuned": result.finetuned_scores, **reference_logprobs}, dtype=float
    )
    return EvaluationOutput(result=result, rows=rows_ref, scores=write_table(scores, out_dir / "row_scores.parquet"))
