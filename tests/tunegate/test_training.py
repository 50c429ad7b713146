"""The training engine's numbers, pinned: a change to tokenization, the prompt format, masking, the optimizer, the
schedule or the seeding moves this curve (as torchtune pins its recipes' loss curves)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.tasks.test_train import BASE_MODEL, ticket_rows
from tunegate.budget import fixed_plan
from tunegate.config import ModelConfig, TrainConfig
from tunegate.training import TrainingJob, run_training

# Measured with torch 2.13.0+cpu, transformers 5.24.0 and peft 0.21.2 on the demo base model: 4 LoRA steps at lr
# 5e-3 on 32 demo tickets, val loss on the next 16 after every step (~4 s). Twice in a row: identical to the last bit.
# A release that changes these numbers on purpose (a new default) means measuring again and saying why here.
PINNED_VAL_LOSS = [(1, 11.478947639465332), (2, 9.396224021911621), (3, 8.672164916992188), (4, 8.489660263061523)]


def test_a_few_steps_of_the_demo_model_reproduce_the_pinned_loss_curve(tmp_path):
    recipe = TrainConfig(batch_size=8, learning_rate=5e-3, warmup_ratio=0.0, save_steps=100)
    result = run_training(
        ticket_rows(32),
        ticket_rows(16, skip=32),
        ModelConfig(base=BASE_MODEL),
        recipe,
        fixed_plan(4, [1, 2, 3, 4]),
        tmp_path,
    )
    assert [step for step, _ in result.val_loss_history] == [1, 2, 3, 4]
    # 1e-4 relative: float32 sums in another order (another BLAS thread count) move the 6th digit, a real change
    # to the recipe moves the first or second.
    torch.testing.assert_close(
        torch.tensor([loss for _, loss in result.val_loss_history]),
        torch.tensor([loss for _, loss in PINNED_VAL_LOSS]),
        rtol=1e-4,
        atol=0.0,
    )


def test_a_job_sets_searched_params_with_their_types():
    recipe = TrainConfig()
    job = TrainingJob.model_construct(recipe=recipe)
    searched = job.with_params({"lora_r": 16.0, "learning_rate": 2})
    assert (searched.recipe.lora_r, searched.recipe.learning_rate) == (16, 2.0)
    assert isinstance(searched.recipe.lora_r, int) and isinstance(searched.recipe.learning_rate, float)
    assert job.recipe == recipe  # the job itself is unchanged


@pytest.mark.parametrize(
    ("method", "knobs", "saved_weights", "trainable"),
    [
        # Trainable parameters as PEFT counts them on the demo model (hidden 192, 4 layers, key/value width 64):
        # 8 tokens x 192; 8 tokens x 4 layers x (key + value) x 64; P-tuning's encoder MLP 192-64-64-192 + 8 x 192.
        ("prompt_tuning", {"prompt_init_text": "Classify the support ticket:"}, ["prompt_embeddings"], 1_536),
        ("prefix_tuning", {}, ["prompt_embeddings"], 4_096),
        ("p_tuning", {"encoder_hidden_size": 64}, ["prompt_embeddings"], 30_528),
    ],
)
def test_a_virtual_token_method_trains_only_its_tokens_and_reloads_to_generate(
    tmp_path, method, knobs, saved_weights, trainable
):
    from peft import PeftModel
    from safetensors.torch import load_file

    from tasks.evaluate import target_token_loss
    from tunegate.model_loading import load_causal_lm, load_tokenizer, load_trained_model
    from tunegate.prompting import PromptFormat
    from tunegate.training import trainable_model

    recipe = TrainConfig(
        method=method, num_virtual_tokens=8, batch_size=8, learning_rate=3e-2, warmup_ratio=0.0, save_steps=100, **knobs
    )
    model_config = ModelConfig(base=BASE_MODEL)
    assert trainable_model(model_config, recipe).get_nb_trainable_parameters()[0] == trainable
    result = run_training(
        ticket_rows(32), ticket_rows(16, skip=32), model_config, recipe, fixed_plan(4, [2, 4]), tmp_path
    )
    assert result.val_loss_history[-1][1] < result.health.initial_val_loss  # it learned something in 4 steps
    adapter = Path(result.adapter_dir)
    saved = load_file(adapter / "adapter_model.safetensors")
    assert sorted(saved) == saved_weights  # only the virtual tokens are saved: the base is untouched by design
    reloaded = load_trained_model(adapter, BASE_MODEL)
    assert isinstance(reloaded, PeftModel) and reloaded.peft_config["default"].peft_type.value.lower() in {
        "prompt_tuning",
        "prefix_tuning",
        "p_tuning",
    }
    base = load_causal_lm(BASE_MODEL, False)
    reloaded_base = {name: tensor for name, tensor in reloaded.get_base_model().state_dict().items()}
    assert all(torch.equal(reloaded_base[name], tensor) for name, tensor in base.state_dict().items())
    tokenizer = load_tokenizer(BASE_MODEL, False)
    # Evaluation scores the input's positions only (prompt and P-tuning prepend their virtual tokens' logits).
    rows, prompt_format = ticket_rows(8, skip=32), PromptFormat.load(adapter)
    tuned_loss = target_token_loss(reloaded, tokenizer, prompt_format, rows, batch_size=8)
    with reloaded.disable_adapter():
        base_loss = target_token_loss(reloaded, tokenizer, prompt_format, rows, batch_size=8)
    assert tuned_loss < base_loss
    prompt = tokenizer("my card was charged twice", return_tensors="pt")
    generated = reloaded.generate(**prompt, max_new_tokens=3, do_sample=False)
    assert generated.shape == (1, prompt["input_ids"].shape[1] + 3)


def test_the_loss_must_fall_by_a_fraction_of_the_part_training_can_remove():
    from tunegate.config import HealthConfig
    from tunegate.health import HealthWatch

    dpo = HealthWatch(HealthConfig(), first_rung=8, initial_val_loss=1.695, removable_loss=0.6931)
    dpo.observe_evaluation(8, 1.671)  # -0.024: 3.5% of ln 2
    assert dpo.report().issues == [
        "loss_not_falling: val loss 1.695 before training -> 1.671 at step 8 (-3.5% of 0.693, needed -5.0%)"
    ]
    learning = HealthWatch(HealthConfig(), first_rung=8, initial_val_loss=1.695, removable_loss=0.6931)
    learning.observe_evaluation(8, 1.630)  # -0.065: 9.4% of ln 2 (3.8% of the whole loss)
    assert learning.report().healthy
