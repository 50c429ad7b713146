"""Loading models and tokenizers: one-line errors, adapters told from whole weights, every stop token, and LoRA
merged into the base only for the duration of inference."""

from __future__ import annotations

import json

import pytest
import torch

from tests.fixtures.training import BASE_MODEL
from tunegate.core.errors import InputError
from tunegate.lm.model_loading import (
    is_adapter,
    load_causal_lm,
    load_tokenizer,
    merged_for_inference,
    stop_token_ids,
)

PROMPT_IDS = torch.tensor([[5, 17, 42, 8, 99, 3, 61, 27]])


def lora_model(seed: int = 0):
    """The toy base with a LoRA adapter whose B matrices are non-zero (a fresh adapter adds nothing)."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(load_causal_lm(BASE_MODEL), LoraConfig(r=4, target_modules="all-linear"))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return model.eval()


def merged_layers(model) -> list[bool]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [module.merged for module in model.modules() if isinstance(module, BaseTunerLayer)]


def test_lora_is_merged_inside_the_block_with_the_same_logits_and_unmerged_after_it():
    model = lora_model()
    weights_before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with torch.no_grad():
        unmerged_logits = model(input_ids=PROMPT_IDS).logits
        with merged_for_inference(model) as merged:
            assert merged is model and set(merged_layers(model)) == {True}
            merged_logits = model(input_ids=PROMPT_IDS).logits
    assert set(merged_layers(model)) == {False}
    # The merged forward is the same function: float32 sums in another order, nothing more.
    torch.testing.assert_close(merged_logits, unmerged_logits, rtol=0.0, atol=1e-4)
    assert not torch.equal(unmerged_logits, load_causal_lm(BASE_MODEL).eval()(input_ids=PROMPT_IDS).logits)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, weights_before[name], rtol=0.0, atol=1e-6)


def test_the_adapter_is_unmerged_when_the_block_raises():
    model = lora_model()
    with pytest.raises(RuntimeError, match="stopped"), merged_for_inference(model):
        raise RuntimeError("stopped")
    assert set(merged_layers(model)) == {False}


def test_models_without_weight_deltas_are_left_as_they_are():
    from peft import PromptTuningConfig, get_peft_model

    base = load_causal_lm(BASE_MODEL)
    with merged_for_inference(base) as same:
        assert same is base
    prompt_tuned = get_peft_model(
        load_causal_lm(BASE_MODEL), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)
    )
    with merged_for_inference(prompt_tuned) as same:
        assert same is prompt_tuned


def test_an_adapter_directory_is_told_from_whole_weights(tmp_path):
    assert not is_adapter(BASE_MODEL)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    assert is_adapter(tmp_path)


def test_a_missing_model_or_tokenizer_is_one_line_naming_it(tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(InputError, match=r"^model '.*no-such-model': cannot load \(") as model_error:
        load_causal_lm(missing)
    with pytest.raises(InputError, match=r"^tokenizer '.*no-such-model': cannot load \(") as tokenizer_error:
        load_tokenizer(missing)
    assert "\n" not in str(model_error.value) and "\n" not in str(tokenizer_error.value)


def test_stop_tokens_are_the_generation_configs_eos_ids_and_the_tokenizers():
    class Tokenizer:
        eos_token_id = 2

    class GemmaLike:
        eos_token_id = [1, 106]

    class OneEos:
        eos_token_id = 2

    assert stop_token_ids(Tokenizer(), GemmaLike()) == [1, 2, 106]
    assert stop_token_ids(Tokenizer(), OneEos()) == [2]
    assert stop_token_ids(Tokenizer(), None) == [2]
