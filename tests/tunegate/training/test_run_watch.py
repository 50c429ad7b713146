"""What a run leaves on disk: which checkpoint a resumed run may start from, and an adapter config that
fingerprints the same for the same weights."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tunegate.training.run_watch import (
    checkpoint_problem,
    checkpoint_step,
    last_complete_checkpoint,
    sort_target_modules,
    value_at,
)


def checkpoint(checkpoints: Path, step: int) -> Path:
    """A checkpoint directory as the Trainer writes one: weights, optimizer state, trainer state (written last)."""
    path = checkpoints / f"checkpoint-{step}"
    path.mkdir(parents=True)
    save_file({"lora_A": torch.ones(4, 8), "lora_B": torch.zeros(8, 4)}, str(path / "adapter_model.safetensors"))
    torch.save({"state": {0: torch.ones(4)}}, path / "optimizer.pt")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}), encoding="utf-8")
    return path


def cut(path: Path, keep_bytes: int) -> None:
    """The file as a killed write leaves it: its first `keep_bytes` bytes."""
    path.write_bytes(path.read_bytes()[:keep_bytes])


def test_a_whole_checkpoint_has_no_problem_and_the_newest_is_resumed(tmp_path):
    for step in (2, 10, 4):
        checkpoint(tmp_path, step)
    assert checkpoint_problem(tmp_path / "checkpoint-10") is None
    # By step number, not by name: checkpoint-10 sorts before checkpoint-2 as text.
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    assert checkpoint_step(last_complete_checkpoint(tmp_path)) == 10
    assert (last_complete_checkpoint(tmp_path / "none"), checkpoint_step(None)) == (None, 0)


@pytest.mark.parametrize(
    ("tear", "problem"),
    [
        (lambda path: (path / "trainer_state.json").unlink(), "trainer_state.json unreadable: "),
        (lambda path: cut(path / "trainer_state.json", 5), "trainer_state.json unreadable: "),
        (lambda path: (path / "adapter_model.safetensors").unlink(), "no weights"),
        (lambda path: cut(path / "adapter_model.safetensors", 100), "adapter_model.safetensors unreadable: "),
        (lambda path: cut(path / "optimizer.pt", 200), "optimizer.pt unreadable: "),
    ],
)
def test_a_torn_checkpoint_is_named_and_the_one_before_it_is_resumed(tmp_path, tear, problem):
    checkpoint(tmp_path, 4)
    newest = checkpoint(tmp_path, 8)
    tear(newest)
    assert checkpoint_problem(newest).startswith(problem)
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")


def test_target_modules_are_written_sorted_and_whole_weights_have_no_adapter_config(tmp_path):
    config = tmp_path / "adapter_config.json"
    config.write_text(json.dumps({"r": 8, "target_modules": ["v_proj", "down_proj", "q_proj"]}), encoding="utf-8")
    sort_target_modules(config)
    assert json.loads(config.read_text(encoding="utf-8")) == {
        "r": 8,
        "target_modules": ["down_proj", "q_proj", "v_proj"],
    }
    sort_target_modules(tmp_path / "full" / "adapter_config.json")  # full fine-tuning: nothing to sort, no error
    assert not (tmp_path / "full").exists()


def test_the_value_at_a_step_falls_back_to_the_last_measured_then_nan():
    history = [(2, 3.5), (6, 2.0), (6, 1.5), (9, 1.0)]
    assert (value_at(history, 6), value_at(history, 7), value_at(history, 2)) == (1.5, 1.0, 3.5)
    assert math.isnan(value_at([], 6))
