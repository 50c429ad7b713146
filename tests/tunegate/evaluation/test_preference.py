import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.fixtures.preference import demo_pairs
from tests.fixtures.training import BASE_MODEL
from tunegate.evaluation.preference import (
    PREFERENCE_METRIC,
    chosen_likelier,
    preference_accuracy_scores,
    preference_result,
    reward_margins,
    sequence_logprobs,
)
from tunegate.evaluation.results import EvalResult
from tunegate.lm.prompting import PromptFormat


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
