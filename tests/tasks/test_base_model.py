import pandas as pd
import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from tasks.base_model import resolve_base_model
from tests.conftest import REPO
from tests.fixtures.registry import BASE_MODEL, register
from tunegate.config.loading import load_config
from tunegate.config.train import ModelConfig
from tunegate.core.errors import InputError
from tunegate.core.refs import write_table
from tunegate.lm.prompting import PromptFormat
from tunegate.runtime.tracking import open_pipeline_run

# make test-fast leaves it out: trains and registers a champion, then merges it into a base
pytestmark = pytest.mark.slow


def trained_looking_adapter(path) -> str:
    """A LoRA adapter whose B matrices are random (an untrained one adds nothing: merged would equal the base)."""
    torch.manual_seed(3)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(BASE_MODEL),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    model.save_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(BASE_MODEL)
    tokenizer.save_pretrained(path)
    PromptFormat.from_tokenizer(tokenizer).save(path)
    return str(path)


def logits_of(model) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([[1, 17, 42, 99, 7]])).logits


def test_a_registered_champion_becomes_a_merged_base_directory_reused_while_intact(tmp_path):
    config = load_config(REPO / "deployments" / "demo_tiny.yaml", [f"home={tmp_path}"])
    tracking = open_pipeline_run(config, "flow-run-id", "base-test", "data-fp")
    rows = write_table(pd.DataFrame({"prompt": ["a"] * 10, "completion": ["billing"] * 10}), tmp_path / "test.parquet")
    adapter = trained_looking_adapter(tmp_path / "adapter")
    assert register(config, tracking, rows, adapter, right=10).promoted  # version 1, champion
    wanted = ModelConfig(base="models:/concurrent-model@champion", max_tokens=64)

    resolved = resolve_base_model(model=wanted, tracking_uri=tracking.uri, home=str(tmp_path))
    directory = tmp_path / "bases" / resolved.base.rsplit("/", 1)[1]
    assert resolved.base == str(directory) and directory.name.startswith("concurrent-model-v1-")
    assert resolved.model_copy(update={"base": wanted.base}) == wanted  # only the base changes
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE_MODEL), adapter)
    expected = logits_of(peft_model)
    assert not torch.allclose(expected, logits_of(AutoModelForCausalLM.from_pretrained(BASE_MODEL)))
    torch.testing.assert_close(logits_of(AutoModelForCausalLM.from_pretrained(directory)), expected)
    assert not (directory / "adapter_config.json").exists() and (directory / "prompt_format.json").is_file()

    weights = directory / "model.safetensors"
    written = weights.stat().st_mtime_ns
    assert resolve_base_model(model=wanted, tracking_uri=tracking.uri, home=str(tmp_path)) == resolved
    assert weights.stat().st_mtime_ns == written  # intact: reused
    weights.write_bytes(b"torn")
    assert resolve_base_model(model=wanted, tracking_uri=tracking.uri, home=str(tmp_path)) == resolved
    torch.testing.assert_close(logits_of(AutoModelForCausalLM.from_pretrained(directory)), expected)

    by_number = wanted.model_copy(update={"base": "models:/concurrent-model/1"})
    assert resolve_base_model(model=by_number, tracking_uri=tracking.uri, home=str(tmp_path)).base == resolved.base


def test_a_path_base_is_left_alone_and_a_missing_version_is_a_one_line_error(tmp_path):
    config = load_config(REPO / "deployments" / "demo_tiny.yaml", [f"home={tmp_path}"])
    tracking = open_pipeline_run(config, "flow-run-id", "base-test", "data-fp")
    local = ModelConfig(base=str(BASE_MODEL))
    assert resolve_base_model(model=local, tracking_uri=tracking.uri, home=str(tmp_path)) == local
    with pytest.raises(InputError) as raised:
        resolve_base_model(model=ModelConfig(base="models:/nobody@champion"), tracking_uri=tracking.uri, home="x")
    assert str(raised.value).startswith("model.base 'models:/nobody@champion': no such registered version (")
    with pytest.raises(InputError) as raised:
        resolve_base_model(model=ModelConfig(base="models:/nobody"), tracking_uri=tracking.uri, home="x")
    assert str(raised.value) == (
        "model.base 'models:/nobody': expected models:/<name>@<alias> or models:/<name>/<version>"
    )
