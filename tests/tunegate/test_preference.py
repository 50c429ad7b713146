import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from tasks.evaluate import evaluate_final_model
from tests.conftest import DEMO_DATA, REPO
from tunegate.budget import fixed_plan
from tunegate.config import EvalConfig, EvaluationSettings, ModelConfig, TaskConfig, TrainConfig
from tunegate.errors import InputError
from tunegate.preference import (
    PREFERENCE_METRIC,
    chosen_likelier,
    preference_accuracy_scores,
    preference_pairs,
    preference_result,
    reply_logprobs,
    reward_margins,
    sequence_logprobs,
)
from tunegate.prompting import PromptFormat
from tunegate.refs import AdapterRef, write_table
from tunegate.stage_results import EvalResult
from tunegate.training import run_training

BASE_MODEL = str(REPO / "demo" / "base_model")


def demo_pairs(count: int, skip: int = 0) -> pd.DataFrame:
    """Valid pairs of the demo's preference file as canonical rows (chosen → completion)."""
    records = [json.loads(line) for line in (DEMO_DATA / "preferences.jsonl").read_text().splitlines() if line]
    valid = [
        r
        for r in records
        if all(isinstance(r.get(f), str) and r[f].strip() for f in ("prompt", "chosen", "rejected"))
        and r["chosen"] != r["rejected"]
    ][skip : skip + count]
    return pd.DataFrame(
        {
            "shape": "preference",
            "prompt": [r["prompt"] for r in valid],
            "completion": [r["chosen"] for r in valid],
            "rejected": [r["rejected"] for r in valid],
            "messages": None,
        }
    )


def test_a_tie_counts_half_and_the_reference_against_itself_scores_exactly_one_half():
    margins = np.array([0.3, -0.2, 0.0, 5e-7, -1e-3])
    assert preference_accuracy_scores(margins).tolist() == [1.0, 0.0, 0.5, 0.5, 0.0]
    reference = (np.array([-4.0, -9.0]), np.array([-3.0, -2.0]))
    assert preference_accuracy_scores(reward_margins(reference, reference, beta=0.1)).tolist() == [0.5, 0.5]


def test_reward_margin_is_beta_times_the_change_in_log_ratio():
    policy = (np.array([-2.0, -6.0]), np.array([-5.0, -1.0]))
    reference = (np.array([-4.0, -5.0]), np.array([-3.0, -2.0]))
    # pair 0: chosen +2, rejected -2 → 0.1 x 4 = 0.4; pair 1: chosen -1, rejected +1 → -0.2
    np.testing.assert_allclose(reward_margins(policy, reference, beta=0.1), [0.4, -0.2])
    assert chosen_likelier(*policy).tolist() == [1.0, 0.0]


def test_the_preference_result_replaces_the_task_metric_and_keeps_the_generation_metrics():
    generation_metrics = EvalResult(
        task_metric="rouge_l",
        rows=4,
        base={"rouge_l": 0.2, "loss": 3.0},
        finetuned={"rouge_l": 0.3, "loss": 2.0},
        delta=0.1,
        delta_ci95=(0.0, 0.2),
        examples=[],
        base_scores=[0.2, 0.2, 0.2, 0.2],
        finetuned_scores=[0.3, 0.3, 0.3, 0.3],
    )
    reference = (np.array([-4.0, -4.0, -4.0, -4.0]), np.array([-3.0, -5.0, -3.0, -3.0]))
    policy = (np.array([-3.0, -3.0, -5.0, -4.0]), np.array([-3.0, -5.0, -3.0, -3.0]))
    result = preference_result(generation_metrics, reference, policy, beta=0.5, seed=0)
    assert result.task_metric == PREFERENCE_METRIC
    assert result.finetuned_scores == [1.0, 1.0, 0.0, 0.5] and result.base_scores == [0.5] * 4
    assert result.base == {"rouge_l": 0.2, "loss": 3.0, PREFERENCE_METRIC: 0.5, "reward_margin": 0.0,
                           "chosen_likelier": 0.25}  # fmt: skip
    assert result.finetuned == {"rouge_l": 0.3, "loss": 2.0, PREFERENCE_METRIC: 0.625, "reward_margin": 0.125,
                                "chosen_likelier": 0.25}  # fmt: skip
    assert result.delta == 0.125 and result.delta_ci95[0] <= 0.125 <= result.delta_ci95[1]
    assert result.generation_ci95 == {"rouge_l": pytest.approx((0.1, 0.1))}  # every row gained 0.1
    with_exact = generation_metrics.model_copy(update={"exact_scores": ([0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0])})
    intervals = preference_result(with_exact, reference, policy, beta=0.5, seed=0).generation_ci95
    assert set(intervals) == {"rouge_l", "exact_match"} and intervals["exact_match"][1] < 0


def test_dpo_refuses_a_split_that_is_not_all_preference_pairs():
    mixed = pd.concat([demo_pairs(3), demo_pairs(2).assign(shape="prompt_completion", rejected=None)])
    with pytest.raises(InputError) as raised:
        preference_pairs(mixed, "train")
    assert str(raised.value) == (
        "train.objective=dpo: the train split must hold preference rows only (prompt, chosen, rejected); "
        "it has 3 and {'prompt_completion': 2} of other shapes"
    )


def test_sequence_logprobs_sum_the_target_tokens_log_probabilities():
    tokenizer = AutoTokenizer.from_pretrained(BASE_MODEL)
    model = AutoModelForCausalLM.from_pretrained(BASE_MODEL)
    prompt_format = PromptFormat.from_tokenizer(tokenizer)
    rows = demo_pairs(2)
    summed = sequence_logprobs(model, tokenizer, prompt_format, rows, batch_size=2)
    pair = prompt_format.format_row(rows.iloc[1].to_dict())
    prompt_ids = tokenizer(pair.prompt)["input_ids"]
    target_ids = tokenizer(pair.target, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + target_ids])).logits[0].float()
    by_hand = sum(
        torch.log_softmax(logits[len(prompt_ids) + i - 1], -1)[token].item() for i, token in enumerate(target_ids)
    )
    assert summed[1] == pytest.approx(by_hand, abs=1e-4)


@pytest.mark.slow  # real DPO training and evaluation (~10 s): `make test` runs it, `make test-fast` does not
def test_a_few_dpo_steps_make_the_policy_prefer_the_chosen_replies_of_its_training_pairs(tmp_path):
    train = demo_pairs(64)  # "val" is 16 of the training pairs: the pretrained base has no category skill to
    # generalise from in 12 steps (held-out pairs' loss rises at first); what is tested is that DPO learns the pairs
    recipe = TrainConfig(
        objective="dpo", dpo_sft_weight=0.0, learning_rate=5e-3, batch_size=8, lora_r=8, save_steps=100
    )  # plain DPO: its loss starts at exactly ln 2
    result = run_training(train, train.head(16), ModelConfig(base=BASE_MODEL), recipe, fixed_plan(12, [6]), tmp_path)
    assert result.steps == 12 and result.method == "lora" and result.objective == "val_loss"
    assert result.health.initial_val_loss == pytest.approx(math.log(2)) and result.health.healthy
    assert result.best_val_loss < 0.6  # the pairs' DPO loss fell from ln 2 = 0.693 (0.438 here)
    tokenizer = AutoTokenizer.from_pretrained(result.adapter_dir)
    prompt_format = PromptFormat.load(result.adapter_dir)
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE_MODEL), result.adapter_dir)
    with tuned.disable_adapter():
        reference = reply_logprobs(tuned, tokenizer, prompt_format, train, batch_size=16)
    policy = reply_logprobs(tuned, tokenizer, prompt_format, train, batch_size=16)
    accuracy = preference_accuracy_scores(reward_margins(policy, reference, beta=0.1)).mean()
    assert accuracy >= 0.75  # from 0.5 (the reference against itself) after 12 steps

    # The evaluate stage judges the same pairs against the base, and keeps the base's log-probabilities.
    settings = EvaluationSettings(
        model=ModelConfig(base=BASE_MODEL),
        task=TaskConfig(),
        evaluation=EvalConfig(max_rows=16, batch_size=16),
        home=str(tmp_path),
        dpo_beta=0.1,
    )
    adapter = AdapterRef.of(result.adapter_dir, "lora")
    evaluated = evaluate_final_model(adapter=adapter, test=write_table(train.head(16), tmp_path / "t.parquet"),
                                     settings=settings)  # fmt: skip
    assert evaluated.result.task_metric == PREFERENCE_METRIC and evaluated.result.base[PREFERENCE_METRIC] == 0.5
    scores = evaluated.scores.read()
    np.testing.assert_allclose(scores["reference_chosen"], reference[0][:16], rtol=1e-5)
    margins = reward_margins(policy, reference, beta=0.1)[:16]
    assert scores["finetuned"].tolist() == preference_accuracy_scores(margins).tolist()
    assert evaluated.result.finetuned["reward_margin"] == pytest.approx(margins.mean(), rel=1e-5)
    assert {"rouge_l", "exact_match", "loss", "chosen_likelier"} <= set(evaluated.result.finetuned)
