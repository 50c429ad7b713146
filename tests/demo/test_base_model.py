"""The committed demo base model loads like a Hub model, from safetensors, and was really pretrained."""

import json
import random
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.conftest import REPO

BASE_MODEL = REPO / "demo" / "base_model"


def test_files_are_safetensors_and_small():
    sizes = {path.name: path.stat().st_size for path in BASE_MODEL.iterdir()}
    assert "model.safetensors" in sizes and not any(name.endswith((".bin", ".pt")) for name in sizes)
    assert sum(sizes.values()) < 25 * 2**20


def test_loads_with_auto_classes_and_its_card_states_the_heldout_perplexity():
    model = AutoModelForCausalLM.from_pretrained(BASE_MODEL, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(BASE_MODEL)
    assert model.config.model_type == "llama"
    assert tokenizer.chat_template and tokenizer.eos_token == "<|end|>"
    stats = json.loads((BASE_MODEL / "training_stats.json").read_text())
    assert f"**{stats['heldout_perplexity']}**" in (BASE_MODEL / "README.md").read_text()
    assert stats["heldout_perplexity"] < stats["heldout_perplexity_untrained"] / 100


def perplexity(model, tokenizer, text: str) -> float:
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return torch.exp(model(input_ids=ids, labels=ids).loss).item()


def test_pretrained_weights_predict_support_text_far_better_than_random_weights():
    pretrained = AutoModelForCausalLM.from_pretrained(BASE_MODEL, use_safetensors=True)
    torch.manual_seed(0)
    random_weights = AutoModelForCausalLM.from_config(pretrained.config)
    tokenizer = AutoTokenizer.from_pretrained(BASE_MODEL)
    text = held_out_ticket()
    assert perplexity(pretrained, tokenizer, text) * 100 < perplexity(random_weights, tokenizer, text)


def held_out_ticket() -> str:
    """A support ticket from the generator with a seed neither the corpus (1) nor its held-out set (2) used."""
    sys.path.insert(0, str(REPO / "demo"))
    import make_support_dataset

    return make_support_dataset.make_ticket("billing", random.Random(12345))
