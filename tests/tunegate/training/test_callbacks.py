"""The Trainer callbacks, driven with the Trainer's own state and control objects: evaluations at the rungs,
health stopping a run, the evaluation history the pruner hears, throughput over steps only, MLflow metrics by step."""

from __future__ import annotations

import math

from transformers import TrainerControl, TrainerState, TrainingArguments

from tunegate.config.train import HealthConfig
from tunegate.runtime.tracking import mlflow_client
from tunegate.training.callbacks import (
    EvaluateAt,
    EvaluationHistory,
    MlflowMetrics,
    Throughput,
    TrainingHealthCallback,
)
from tunegate.training.health import HealthWatch


def at(step: int, tokens_seen: int = 0) -> TrainerState:
    state = TrainerState()
    state.global_step, state.num_input_tokens_seen = step, tokens_seen
    return state


def test_the_rungs_evaluate_and_save_and_save_steps_only_save(tmp_path):
    args, callback = TrainingArguments(output_dir=str(tmp_path), report_to=[]), EvaluateAt([7, 21, 60], save_steps=20)
    seen = {}
    for step in (7, 20, 21, 22, 40):
        control = TrainerControl()
        callback.on_step_end(args, at(step), control)
        seen[step] = (control.should_evaluate, control.should_save)
    assert seen == {7: (True, True), 20: (False, True), 21: (True, True), 22: (False, False), 40: (False, True)}


def test_a_non_finite_loss_stops_training_at_once(tmp_path):
    args, control = TrainingArguments(output_dir=str(tmp_path), report_to=[]), TrainerControl()
    callback = TrainingHealthCallback(HealthWatch(HealthConfig(), first_rung=10))
    callback.on_log(args, at(1), control, logs={"loss": 2.5, "grad_norm": 0.8})
    assert not control.should_training_stop
    callback.on_log(args, at(2), control, logs={"loss": math.nan, "grad_norm": 0.8})
    assert control.should_training_stop
    assert callback.watch.issues == ["non_finite_loss: loss nan grad_norm 0.8 at step 2"]


def test_every_evaluation_is_kept_and_reported_with_its_objective(tmp_path):
    args, heard = TrainingArguments(output_dir=str(tmp_path), report_to=[]), []
    history = EvaluationHistory(lambda step, values: heard.append((step, values)), "accuracy")
    history.on_evaluate(args, at(7), TrainerControl(), metrics={"eval_loss": 1.5, "eval_accuracy": 0.25})
    history.on_evaluate(args, at(21), TrainerControl(), metrics={"eval_loss": 0.5})  # no objective: the loss
    assert history.losses == [(7, 1.5), (21, 0.5)] and history.objective == [(7, 0.25), (21, 0.5)]
    assert heard == [(7, {"val_loss": 1.5, "accuracy": 0.25}), (21, {"val_loss": 0.5, "accuracy": 0.5})]


def test_throughput_counts_the_tokens_of_steps_not_the_time_between_them(tmp_path):
    args, throughput = TrainingArguments(output_dir=str(tmp_path), report_to=[]), Throughput()
    assert throughput.tokens_per_second() == 0.0
    throughput.on_step_begin(args, at(0, tokens_seen=0), TrainerControl())
    throughput.on_step_end(args, at(1, tokens_seen=800), TrainerControl())
    throughput.on_step_begin(args, at(1, tokens_seen=800), TrainerControl())
    throughput.on_step_end(args, at(2, tokens_seen=1000), TrainerControl())
    assert throughput.tokens == 1000 and throughput.seconds > 0.0
    assert throughput.tokens_per_second() == round(1000 / throughput.seconds, 1)


def test_the_trainers_loss_rate_and_gradient_norm_are_logged_by_step_under_the_run_names(tmp_path):
    client = mlflow_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(client.create_experiment("callbacks")).info.run_id
    callback, args = MlflowMetrics(client, run_id), TrainingArguments(output_dir=str(tmp_path), report_to=[])
    callback.on_log(args, at(3), TrainerControl(), logs={"loss": 2.5, "learning_rate": 4e-4, "grad_norm": 0.75})
    callback.on_log(args, at(4), TrainerControl(), logs={"eval_loss": 1.0, "epoch": 0.1})  # not the Trainer's three
    logged = client.get_run(run_id).data.metrics
    assert logged == {"train_loss": 2.5, "learning_rate": 4e-4, "grad_norm": 0.75}
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "train_loss")] == [(3, 2.5)]
