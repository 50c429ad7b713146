"""One model's predictions: the rows evaluated, the base seen through a tuned adapter, and the one-pass path of a
labelled task equal to its answers, label choices and loss computed apart."""

from __future__ import annotations

import math

import pandas as pd
import torch

from tests.fixtures.training import BASE_MODEL, LABELS, ticket_rows
from tunegate.evaluation.label_likelihood import label_choices
from tunegate.evaluation.predictions import base_view, evaluation_rows, predict, target_token_loss
from tunegate.evaluation.scoring import generate, new_token_budget
from tunegate.lm.model_loading import load_causal_lm, load_tokenizer
from tunegate.lm.prompting import PromptFormat

IDS = torch.tensor([[5, 17, 42, 8, 99, 3]])


def tuned_toy():
    """The toy base with a LoRA adapter that changes its outputs (non-zero B)."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(load_causal_lm(BASE_MODEL), LoraConfig(r=4, target_modules="all-linear"))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return model.eval()


def test_a_label_task_evaluates_its_first_labelled_rows_and_a_free_text_task_every_row():
    test = pd.DataFrame(
        {"prompt": ["a", "b", "c", "d"], "completion": ["x", "billing", "y", "shipping"], "labelled": [0, 1, 0, 1]}
    )
    assert evaluation_rows(test, LABELS, 1)["prompt"].tolist() == ["b"]
    assert evaluation_rows(test, LABELS, 10)["prompt"].tolist() == ["b", "d"]
    assert evaluation_rows(test, None, 3)["prompt"].tolist() == ["a", "b", "c"]
    assert evaluation_rows(test, LABELS, 10).index.tolist() == [0, 1]


def test_the_base_view_of_an_adapter_is_its_base_for_the_block_only():
    tuned, base = tuned_toy(), load_causal_lm(BASE_MODEL).eval()
    with torch.no_grad():
        base_logits, tuned_logits = base(input_ids=IDS).logits, tuned(input_ids=IDS).logits
        assert not torch.allclose(base_logits, tuned_logits, atol=1e-3)
        with base_view(tuned, None) as seen:
            torch.testing.assert_close(seen(input_ids=IDS).logits, base_logits, rtol=0.0, atol=1e-6)
        torch.testing.assert_close(tuned(input_ids=IDS).logits, tuned_logits, rtol=0.0, atol=0.0)
        with base_view(tuned, base) as seen:  # whole fine-tuned weights: the separately loaded base
            assert seen is base


def test_a_label_tasks_one_pass_gives_the_answers_choices_and_loss_each_computed_apart():
    model, tokenizer = tuned_toy(), load_tokenizer(BASE_MODEL)
    prompt_format = PromptFormat.from_tokenizer(tokenizer, None)
    rows = ticket_rows(6).reset_index(drop=True)
    predicted = predict(model, tokenizer, prompt_format, rows, LABELS, batch_size=4)
    prompts = [prompt_format.format_row(row).prompt for row in rows.to_dict("records")]
    assert predicted.generations == generate(model, tokenizer, prompts, new_token_budget(tokenizer, LABELS), 4)
    assert predicted.label_choices == label_choices(model, tokenizer, prompt_format, rows, LABELS, 4)
    # Every target is a label: the label scores hold the loss that teacher forcing the rows gives.
    assert math.isclose(predicted.loss, target_token_loss(model, tokenizer, prompt_format, rows, 4), rel_tol=1e-5)
    free_text = predict(model, tokenizer, prompt_format, rows.assign(completion="a longer reply"), LABELS, 4)
    assert free_text.generations == predicted.generations and free_text.label_choices == predicted.label_choices
    assert free_text.loss != predicted.loss
