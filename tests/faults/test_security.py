"""Fault class 6: passwords in URIs never reach the summary, the terminal, logs, MLflow or Prefect artifacts;
a tampered registry entry cannot run code when the champion is re-scored."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from tests.conftest import REPO
from tests.fixtures.registry import BASE_MODEL, evaluation, lora_adapter, register
from tunegate.config.loading import load_config
from tunegate.core.refs import write_table
from tunegate.core.secrets import RedactingFilter, redact, redact_value
from tunegate.evaluation.results import EvaluationOutput
from tunegate.lm.model_loading import load_tokenizer
from tunegate.lm.prompting import PromptFormat
from tunegate.registry.promotion import champion_scores_on, current_champion
from tunegate.runtime.tracking import mlflow_client, open_pipeline_run


def test_passwords_in_any_uri_are_redacted_and_nothing_else_is_touched():
    text = "storage postgresql+psycopg://me:p@ss:w0rd@db.internal:5432/optuna and http://host/x and a:b@c"
    assert redact(text) == "storage postgresql+psycopg://me:***@db.internal:5432/optuna and http://host/x and a:b@c"
    assert redact_value({"uri": ["https://u:pw@h/api", 3]}) == {"uri": ["https://u:***@h/api", 3]}


def test_the_debug_log_filter_redacts_arguments_too(tmp_path):
    handler = logging.FileHandler(tmp_path / "debug.log")
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tunegate-redaction-test")
    logger.addHandler(handler)
    logger.warning("connecting to %s", "mysql://root:hunter2@10.0.0.1/optuna")
    handler.close()
    assert (tmp_path / "debug.log").read_text() == "connecting to mysql://root:***@10.0.0.1/optuna\n"


def trained_adapter_dir(path: Path) -> str:
    """What training saves: the adapter, the tokenizer and the prompt format."""
    adapter = lora_adapter(path, 1)
    tokenizer = load_tokenizer(str(BASE_MODEL))
    tokenizer.save_pretrained(adapter)
    PromptFormat.from_tokenizer(tokenizer).save(Path(adapter))
    return adapter


class Planted:
    """Unpickling this writes a file: proof that code from the registry ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "the registry ran code"))


def test_rescoring_a_tampered_champion_loads_weights_never_its_pickle(tmp_path):
    config = load_config(REPO / "deployments" / "demo_tiny.yaml", [f"home={tmp_path}"])
    tracking = open_pipeline_run(config, "flow-run-id", "tamper-test", "data-fp")
    rows = write_table(pd.DataFrame({"prompt": ["a"] * 10, "completion": ["billing"] * 10}), tmp_path / "test.parquet")
    register(config, tracking, rows, trained_adapter_dir(tmp_path / "adapter"), 5)
    client = mlflow_client(tracking.uri)
    champion = current_champion(client, "concurrent-model")
    pickled = list((tmp_path / "mlartifacts").rglob("python_model.pkl"))
    marker = tmp_path / "marker.txt"
    assert len(pickled) == 1
    pickled[0].write_bytes(pickle.dumps(Planted(str(marker))))
    other_rows = write_table(
        pd.DataFrame({"prompt": ["b"] * 4, "completion": ["shipping"] * 4}), tmp_path / "other.parquet"
    )  # other rows than the logged scores: the champion must be evaluated now
    evaluated = EvaluationOutput(result=evaluation(np.zeros(4), np.ones(4)), rows=other_rows, scores=other_rows)
    scores = champion_scores_on(client, champion, evaluated, "concurrent-model", tracking.uri)
    assert len(scores) == 4 and set(scores) <= {0.0, 1.0}
    assert not marker.exists()
    assert str(BASE_MODEL) in (Path(pickled[0]).parent / "MLmodel").read_text()


def test_a_logged_traceback_that_quotes_a_uri_is_redacted(tmp_path):
    handler = logging.FileHandler(tmp_path / "debug.log")
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tunegate-traceback-test")
    logger.addHandler(handler)
    try:
        raise ConnectionError("API request to http://me:hunter2@127.0.0.1:5000/api failed")
    except ConnectionError:
        logger.exception("run failed")
    handler.close()
    logged = (tmp_path / "debug.log").read_text()
    assert "hunter2" not in logged
    assert logged.splitlines()[-1] == "ConnectionError: API request to http://me:***@127.0.0.1:5000/api failed"
