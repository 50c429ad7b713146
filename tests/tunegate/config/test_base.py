"""The checks config sections share: unknown keys refused, Optuna storage and MLflow tracking URLs checked before
any work (a password never echoed back), registered model names by MLflow's own rule."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tunegate.config.base import (
    StrictModel,
    checked_model_name,
    checked_storage_url,
    checked_tracking_uri,
)
from tunegate.config.data import SplitConfig


def test_a_config_section_refuses_a_key_it_does_not_know():
    class Section(StrictModel):
        rows: int = 1

    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Section(rowz=2)


@pytest.mark.parametrize(
    "url", ["journal:/data/optuna.log", "sqlite:///optuna.db", "postgresql://tune@db.internal:5432/optuna"]
)
def test_storage_urls_optuna_can_open_pass(url):
    assert checked_storage_url(url) == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("journal:  ", "journal: needs a file path, e.g. journal:/data/optuna.log"),
        ("redis://cache/0", "unsupported database 'redis'; expected one of ('sqlite', 'postgresql', 'mysql', "),
        ("not a url", "not a database URL (not a url); expected e.g. sqlite:///optuna.db"),
    ],
)
def test_a_storage_url_optuna_cannot_open_is_refused_with_what_was_expected(url, message):
    with pytest.raises(ValueError) as refused:
        checked_storage_url(url)
    assert str(refused.value).startswith(message)


@pytest.mark.parametrize(
    "uri", ["mlruns", "/srv/mlruns", "C:\\mlruns", "file:///srv/mlruns", "http://127.0.0.1:5000", "sqlite:///m.db"]
)
def test_tracking_uris_mlflow_can_store_runs_in_pass(uri):
    assert checked_tracking_uri(uri) == uri


def test_a_tracking_uri_mlflow_cannot_use_is_refused_without_echoing_its_password():
    with pytest.raises(ValueError) as scheme:
        checked_tracking_uri("ftp://me:hunter2@host/runs")
    assert str(scheme.value).startswith("unsupported scheme 'ftp' in ftp://me:***@host/runs; expected one of (")
    assert "hunter2" not in str(scheme.value)
    with pytest.raises(ValueError, match=r"^http:///runs has no host$"):
        checked_tracking_uri("http:///runs")


def test_model_names_follow_mlflows_rule():
    assert checked_model_name("support-demo") == "support-demo"
    for name in ("", "team/model", "model:v2"):
        with pytest.raises(ValueError):
            checked_model_name(name)


def test_a_split_must_leave_train_rows():
    with pytest.raises(ValidationError, match=r"val_fraction \+ test_fraction = 1 leaves no train rows"):
        SplitConfig(val_fraction=0.5, test_fraction=0.5)
    assert SplitConfig(val_fraction=0.2, test_fraction=0.2).seed == 42
