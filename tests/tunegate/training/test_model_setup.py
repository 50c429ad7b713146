"""Model set-up: each virtual-token method trains only its tokens (PEFT's counts) and reloads to generate."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.fixtures.training import BASE_MODEL, ticket_rows
from tunegate.config.train import ModelConfig, TrainConfig
from tunegate.training.budget import fixed_plan
from tunegate.training.job import run_training


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

    from tunegate.evaluation.predictions import target_token_loss
    from tunegate.lm.model_loading import load_causal_lm, load_tokenizer, load_trained_model
    from tunegate.lm.prompting import PromptFormat
    from tunegate.training.model_setup import trainable_model

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


def test_lora_on_the_top_blocks_adapts_only_those_blocks_and_reloads_with_the_same_logits(tmp_path):
    from safetensors.torch import load_file

    from tunegate.lm.model_loading import load_tokenizer, load_trained_model
    from tunegate.training.model_setup import trainable_model

    model_config = ModelConfig(base=BASE_MODEL)
    recipe = TrainConfig(
        lora_top_layers=2, lora_r=8, batch_size=8, learning_rate=5e-3, warmup_ratio=0.0, save_steps=100
    )
    # The demo model's 4 blocks, every linear of a block adapted (all-linear): 108,544 LoRA weights, half of them
    # in the top 2 blocks.
    assert trainable_model(model_config, TrainConfig(lora_r=8)).get_nb_trainable_parameters()[0] == 108_544
    assert trainable_model(model_config, recipe).get_nb_trainable_parameters()[0] == 54_272
    result = run_training(ticket_rows(16), ticket_rows(8, skip=16), model_config, recipe, fixed_plan(2, [2]), tmp_path)
    adapter = Path(result.adapter_dir)
    blocks = {name.split(".layers.")[1].split(".")[0] for name in load_file(adapter / "adapter_model.safetensors")}
    assert blocks == {"2", "3"}
    reloaded = load_trained_model(adapter, BASE_MODEL)
    assert reloaded.peft_config["default"].layers_to_transform == [2, 3]
    prompt = load_tokenizer(BASE_MODEL, False)("my card was charged twice", return_tensors="pt")
    with torch.no_grad():
        tuned = reloaded(**prompt).logits
        with reloaded.disable_adapter():
            base = reloaded(**prompt).logits
    assert not torch.allclose(tuned, base)  # two steps at 5e-3 moved the top blocks' adapters


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"lora_top_layers": 5}, "train.lora_top_layers=5: the base has 4 transformer blocks; expected 1..4"),
        (
            {"lora_top_layers": 2, "target_modules": ".*q_proj"},
            "train.lora_top_layers needs train.target_modules as all-linear or a list of names, not '.*q_proj'",
        ),
    ],
)
def test_lora_top_layers_that_cannot_apply_are_one_line_errors(knobs, message):
    from tunegate.core.errors import InputError
    from tunegate.training.model_setup import trainable_model

    with pytest.raises(InputError) as raised:
        trainable_model(ModelConfig(base=BASE_MODEL), TrainConfig(**knobs))
    assert str(raised.value) == message
