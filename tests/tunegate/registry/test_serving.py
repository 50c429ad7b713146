"""What a registered model serves with: greedy answers in its training prompt format for bare prompts and canonical
rows alike, the base by an absolute path, and the whole package as its code."""

from __future__ import annotations

import pandas as pd

from tests.fixtures.training import BASE_MODEL
from tunegate.evaluation.scoring import generate
from tunegate.lm.model_loading import load_causal_lm, load_tokenizer
from tunegate.lm.prompting import PromptFormat
from tunegate.registry.serving import PACKAGE_DIR, answers, base_model_reference

PROMPTS = ["My parcel never arrived.", "I was charged twice for one order."]


def test_bare_prompts_and_canonical_rows_get_the_same_stripped_greedy_answers():
    model, tokenizer = load_causal_lm(BASE_MODEL).eval(), load_tokenizer(BASE_MODEL)
    prompt_format = PromptFormat.from_tokenizer(tokenizer, None)
    bare = answers(model, tokenizer, prompt_format, pd.DataFrame({"prompt": PROMPTS}), 6, batch_size=2)
    canonical = pd.DataFrame(
        {"shape": "prompt_completion", "prompt": PROMPTS, "completion": ["", ""], "messages": [None, None]}
    )
    assert answers(model, tokenizer, prompt_format, canonical, 6, batch_size=1) == bare
    generated = generate(model, tokenizer, [prompt_format.format_prompt(p) for p in PROMPTS], 6, 2)
    assert bare == [text.strip() for text in generated]
    assert answers(model, tokenizer, prompt_format, pd.DataFrame({"prompt": []}), 6, batch_size=2) == []


def test_a_local_base_is_referenced_by_its_absolute_path_and_a_hub_id_as_it_is(tmp_path, monkeypatch):
    (tmp_path / "bases" / "mine").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert base_model_reference("bases/mine") == str(tmp_path / "bases" / "mine")
    assert base_model_reference("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_the_code_a_registered_model_carries_is_the_whole_package():
    assert PACKAGE_DIR.name == "tunegate" and (PACKAGE_DIR / "__init__.py").is_file()
    assert {path.name for path in PACKAGE_DIR.iterdir() if (path / "__init__.py").is_file()} >= {
        "registry",
        "evaluation",
        "lm",
        "training",
    }
