"""Real (tiny) training of the demo base model on demo tickets: LoRA, resume after kill -9, QLoRA guard."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO
from tests.fixtures.training import BASE_MODEL, LABELS, PLAN, TINY, ticket_rows
from tunegate.config.train import ModelConfig
from tunegate.core.errors import InputError
from tunegate.training.budget import fixed_plan
from tunegate.training.job import run_training
from tunegate.training.run_watch import last_complete_checkpoint

# make test-fast leaves it out: trains the toy model through the train stage
pytestmark = pytest.mark.slow


def test_lora_trains_every_adapter_weight_and_lowers_val_loss(tmp_path):
    result = run_training(ticket_rows(64), ticket_rows(16, skip=64), ModelConfig(base=BASE_MODEL), TINY, PLAN, tmp_path)
    assert (result.steps, result.resumed_from_step, result.overlength_rows) == (8, 0, 0)
    assert [step for step, _ in result.val_loss_history] == [4, 8]
    assert result.val_loss_history[1][1] < result.val_loss_history[0][1]
    # Judged on val loss: the kept checkpoint is the lower-loss one, and its loss is the objective.
    assert (result.objective, result.best_step) == ("val_loss", 8)
    assert result.best_val_loss == result.best_objective == min(loss for _, loss in result.val_loss_history)
    assert result.health.healthy and result.health.initial_val_loss > result.best_val_loss
    assert result.tokens_per_second > 0 and result.train_tokens_seen > 0 and result.peak_memory_mb > 0
    # Rank 8 on the 7 linear kinds of 4 layers of the 2.4M-parameter demo model: 8 x (in + out) summed over them.
    assert result.trainable_parameters == 108_544
    adapter = Path(result.adapter_dir)
    assert {"adapter_model.safetensors", "adapter_config.json", "prompt_format.json", "tokenizer.json"} <= {
        p.name for p in adapter.iterdir()
    }
    # Sorted, so identical weights fingerprint the same whatever the hash seed (PEFT writes a set).
    assert json.loads((adapter / "adapter_config.json").read_text())["target_modules"] == [
        "down_proj",
        "gate_proj",
        "k_proj",
        "o_proj",
        "q_proj",
        "up_proj",
        "v_proj",
    ]
    weights = load_file(adapter / "adapter_model.safetensors")
    lora_b = {name: tensor for name, tensor in weights.items() if "lora_B" in name}
    # 4 layers x 7 linear modules (q, k, v, o, gate, up, down): all-linear leaves out only lm_head.
    assert len(lora_b) == 28
    # lora_B starts at exactly zero, so a non-zero B means that adapter was trained.
    assert [name for name, tensor in lora_b.items() if torch.count_nonzero(tensor) == 0] == []


@pytest.mark.parametrize(
    ("method", "model", "message"),
    [
        ("qlora", ModelConfig(base=BASE_MODEL), "train.method=qlora needs a CUDA GPU for 4-bit bitsandbytes weights"),
        (
            "lora",
            ModelConfig(base=BASE_MODEL, load_in_8bit=True),
            "model.load_in_8bit needs a CUDA GPU for 8-bit bitsandbytes weights",
        ),
    ],
)
def test_a_quantized_base_without_cuda_is_a_one_line_input_error(tmp_path, method, model, message):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    config = TINY.model_copy(update={"method": method})
    with pytest.raises(InputError) as refused:
        run_training(ticket_rows(16), ticket_rows(8, skip=16), model, config, PLAN, tmp_path)
    assert str(refused.value) == f"{message}; none here (use lora)"


TRAIN_SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from tests.fixtures.training import ticket_rows, BASE_MODEL
from tunegate.training.job import run_training
from tunegate.training.budget import fixed_plan
from tunegate.config.train import ModelConfig, TrainConfig
config = TrainConfig(save_steps=4, batch_size=8, learning_rate=5e-3, early_stopping_patience=100)
train, val = ticket_rows(64), ticket_rows(16, skip=64)
plan = fixed_plan(60, list(range(4, 61, 4)))
result = run_training(train, val, ModelConfig(base=BASE_MODEL), config, plan, Path(sys.argv[1]))
print("RESUMED", result.resumed_from_step, "STEPS", result.steps)
"""


def test_a_run_killed_mid_training_resumes_from_its_last_checkpoint(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT.format(repo=str(REPO)))
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, str(script), str(out)], env=env, cwd=REPO)
    deadline = time.monotonic() + 240
    while last_complete_checkpoint(out / "checkpoints") is None or "checkpoint-8" not in str(
        last_complete_checkpoint(out / "checkpoints")
    ):
        assert process.poll() is None, "training finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = int(Path(last_complete_checkpoint(out / "checkpoints")).name.split("-")[1])
    assert 8 <= killed_at < 60
    again = subprocess.run([sys.executable, str(script), str(out)], env=env, cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"RESUMED {killed_at} STEPS 60" in again.stdout


def test_full_fine_tuning_saves_whole_weights_and_trains_every_parameter(tmp_path):
    from safetensors.torch import load_file as load_weights
    from transformers import AutoModelForCausalLM

    config = TINY.model_copy(update={"method": "full", "learning_rate": 1e-3})
    plan = fixed_plan(4, [2, 4])
    result = run_training(
        ticket_rows(32), ticket_rows(8, skip=32), ModelConfig(base=BASE_MODEL), config, plan, tmp_path
    )
    saved = load_weights(Path(result.adapter_dir) / "model.safetensors")
    base = AutoModelForCausalLM.from_pretrained(BASE_MODEL, use_safetensors=True).state_dict()
    unchanged = [name for name, tensor in saved.items() if torch.equal(tensor, base[name])]
    # RMSNorm weights get gradients too; nothing stays at its pretrained value.
    assert unchanged == []
    assert not (Path(result.adapter_dir) / "adapter_config.json").exists()


def test_full_weights_are_evaluated_against_a_separate_base(tmp_path):
    from tasks.evaluate import evaluate_final_model
    from tunegate.config.data import TaskConfig
    from tunegate.config.registry import EvalConfig, EvaluationSettings
    from tunegate.core.refs import AdapterRef, write_table

    config = TINY.model_copy(update={"method": "full", "learning_rate": 1e-3})
    plan = fixed_plan(4, [2, 4])
    trained = run_training(
        ticket_rows(32), ticket_rows(8, skip=32), ModelConfig(base=BASE_MODEL), config, plan, tmp_path
    )
    test = write_table(ticket_rows(8, skip=40).assign(labelled=True), tmp_path / "test.parquet")
    settings = EvaluationSettings(
        model=ModelConfig(base=BASE_MODEL),
        task=TaskConfig(labels=sorted(LABELS)),
        evaluation=EvalConfig(max_rows=8, batch_size=8),
        home=str(tmp_path),
    )
    output = evaluate_final_model.fn(AdapterRef.of(trained.adapter_dir, trained.method), test, settings)
    assert output.rows.rows == 8 and output.result.rows == 8
    assert output.result.finetuned["loss"] < output.result.base["loss"]


def test_the_task_metric_objective_chooses_the_kept_checkpoint(tmp_path):
    plan = fixed_plan(8, [4, 8], labels=sorted(LABELS), objective="task_metric", objective_rows=12)
    val = ticket_rows(16, skip=64).assign(labelled=True)
    result = run_training(ticket_rows(64), val, ModelConfig(base=BASE_MODEL), TINY, plan, tmp_path)
    assert result.objective == "accuracy"
    assert [step for step, _ in result.objective_history] == [4, 8]
    # Accuracy on 12 rows is a multiple of 1/12; equal accuracies go to the lower val loss.
    assert all(round(value * 12, 6) == round(value * 12) for _, value in result.objective_history)
    losses = dict(result.val_loss_history)
    expected = max(result.objective_history, key=lambda point: (point[1], -losses[point[0]]))
    assert (result.best_step, result.best_objective) == expected
    assert result.best_val_loss == losses[expected[0]]


def test_a_diverging_run_is_flagged_unhealthy_and_stopped(tmp_path):
    # lr 50 on LoRA: the first steps blow the loss up; the val loss at the first rung is far above its start, which
    # is flagged at once (not at the judged step, 8 here).
    config = TINY.model_copy(update={"learning_rate": 50.0, "max_grad_norm": 1e6})
    result = run_training(
        ticket_rows(64), ticket_rows(16, skip=64), ModelConfig(base=BASE_MODEL), config, fixed_plan(8, [2, 8]),
        tmp_path,
    )  # fmt: skip
    assert not result.health.healthy
    assert result.health.issues[0].split(":")[0] in {"loss_diverging", "non_finite_loss"}
    assert result.steps < 8 and result.stopped_early
