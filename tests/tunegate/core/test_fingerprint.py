"""Content fingerprints are the cache keys and the identities of registered versions: pinned, so a change to
how they are computed (which would orphan every cache entry and every version's lineage) shows up here."""

from __future__ import annotations

import hashlib

from tunegate.core.fingerprint import (
    combine,
    fingerprint_bytes,
    fingerprint_directory,
    fingerprint_file,
    fingerprint_value,
)
from tunegate.training.budget import fixed_plan


def test_a_value_fingerprint_is_sha256_of_its_sorted_json_and_ignores_key_order():
    expected = hashlib.sha256(b'{"a": [1, 2.5, "x"], "b": 1}').hexdigest()
    assert expected == "44f5a7e5d99bdb90de1058ef47d2244eb752c6350799db4d70256369f27a3658"
    assert (
        fingerprint_value({"b": 1, "a": [1, 2.5, "x"]}) == fingerprint_value({"a": [1, 2.5, "x"], "b": 1}) == expected
    )


def test_a_pydantic_model_is_fingerprinted_as_its_json_dump():
    plan = fixed_plan(4, [2, 4])
    assert fingerprint_value(plan) == fingerprint_value(plan.model_dump(mode="json"))
    assert fingerprint_value(plan) == "22292e25a0ea1dea0236ed71bd3dd6f814492ec166242c4f39dfbe8ce8a88bb3"


def test_bytes_and_files_hash_their_content_in_chunks(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"tunegate")
    assert fingerprint_bytes([b"tune", b"gate"]) == fingerprint_file(path) == hashlib.sha256(b"tunegate").hexdigest()
    assert fingerprint_file(path) == "9f6003f0f8ff554ad5afc0c6e8230561c3e8caf31b092515c085e523d1e01994"


def test_combine_is_order_sensitive():
    assert combine("a", "b") == "7e18f737311b2dc3b2f269dd78396b0351f14fb66efa879f768cb23181883c78"
    assert combine("b", "a") == "c4a78e5bdf318c857b19a6ae4678d9fc8ab0d9bf2b7dd11b41a06c4c1047d943"


def test_a_directory_fingerprint_covers_every_file_name_and_content(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "w.bin").write_bytes(b"\x00\x01")
    (tmp_path / "config.json").write_text('{"r": 8}')
    pinned = "1db57a7aaf10cb5d496496ffd0fcfc7d55f9201719f4f056693c3e782faa4d8c"
    config_sha, weights_sha = hashlib.sha256(b'{"r": 8}').hexdigest(), hashlib.sha256(b"\x00\x01").hexdigest()
    manifest = [f"config.json:{config_sha}", f"sub/w.bin:{weights_sha}"]
    assert fingerprint_directory(tmp_path) == combine(*manifest) == pinned
    (tmp_path / "sub" / "w.bin").rename(tmp_path / "sub" / "v.bin")  # same bytes, another name
    assert fingerprint_directory(tmp_path) != pinned
