"""Loading the config: `--set` overrides parsed as YAML, one-line errors naming the field or file, passwords
refused in config files, and cross-section rules checked at load time."""

import os

import pytest

from tests.conftest import REPO
from tunegate.config.loading import load_config, passwords_moved_to_environment, validate_config
from tunegate.core.errors import InputError

DEMO_CONFIG = REPO / "deployments" / "demo.yaml"


def test_proxy_trials_must_be_refit():
    document = {"data": {"sources": [{"path": "x.csv"}]}, "sweep": {"trial_max_steps": 30}}
    with pytest.raises(InputError, match="sweep.trial_max_steps \\(proxy trials\\) needs sweep.final: refit"):
        validate_config(document, "cfg.yaml")
    document["sweep"]["final"] = "refit"
    assert validate_config(document, "cfg.yaml").sweep.trial_max_steps == 30


def test_overrides_parse_as_yaml_and_reach_nested_and_list_fields():
    config = load_config(
        DEMO_CONFIG,
        ["data.dedup.threshold=0.9", "data.sources.1.path=other.jsonl", "task.labels=[a, b]", "home=/tmp/x"],
    )
    assert config.data.dedup.threshold == 0.9
    assert config.data.sources[1].path == "other.jsonl"
    assert config.task.labels == ["a", "b"]
    assert config.home == "/tmp/x"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.dedup.threshold=1.5", "field data.dedup.threshold: Input should be less than or equal to 1"),
        ("data.dedup.treshold=0.9", "field data.dedup.treshold: Extra inputs are not permitted"),
        ("data.sources.7.path=x", "--set data.sources.7: expected an index below 2, got '7'"),
        ("novalue", "--set 'novalue': expected key.path=value"),
        ("task.labels=null", "demo.yaml: task.labels is empty but sources ['demo/data/tickets.csv'] are labelled"),
    ],
)
def test_bad_overrides_are_one_line_errors_naming_the_field(override, message):
    with pytest.raises(InputError) as error:
        load_config(DEMO_CONFIG, [override])
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_and_malformed_config_files(tmp_path):
    with pytest.raises(InputError, match=r"nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndata: [unclosed\n")
    with pytest.raises(InputError, match=r"bad.yaml line 3: not valid YAML"):
        load_config(bad)


def test_a_password_in_a_config_file_is_refused_and_the_environment_named(tmp_path):
    config = tmp_path / "team.yaml"
    config.write_text(DEMO_CONFIG.read_text() + "sweep:\n  storage: postgresql://tunegate:s3cret@db:5433/optuna\n")
    with pytest.raises(InputError) as raised:
        load_config(config)
    assert str(raised.value) == (
        f"{config}: sweep.storage holds a password (postgresql://tunegate:***@db:5433/optuna); keep secrets out of "
        "config files: drop it from the URL and set PGPASSWORD in the environment"
    )
    config.write_text(DEMO_CONFIG.read_text() + "sweep:\n  storage: postgresql://tunegate@db:5433/optuna\n")
    assert load_config(config).sweep.storage == "postgresql://tunegate@db:5433/optuna"


def test_passwords_given_with_set_move_into_the_variables_their_clients_read(monkeypatch):
    for variable in ("PGPASSWORD", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_USERNAME"):
        monkeypatch.delenv(variable, raising=False)
    config = passwords_moved_to_environment(
        load_config(
            DEMO_CONFIG,
            [
                "sweep.storage=postgresql+psycopg://tunegate@db:5433/optuna?sslmode=require&password=pg-s3cret",
                "registry.tracking_uri=https://me:ml-s3cret@mlflow.example:5000",
            ],
        )
    )
    assert config.sweep.storage == "postgresql+psycopg://tunegate@db:5433/optuna?sslmode=require"
    assert config.registry.tracking_uri == "https://mlflow.example:5000"
    assert "s3cret" not in config.model_dump_json()
    assert [os.environ[v] for v in ("PGPASSWORD", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_USERNAME")] == [
        "pg-s3cret",
        "ml-s3cret",
        "me",
    ]
    unchanged = load_config(DEMO_CONFIG, ["sweep.storage=postgresql://tunegate@db/optuna"])
    assert passwords_moved_to_environment(unchanged) == unchanged


def test_a_password_no_client_can_read_from_the_environment_is_a_one_line_error(monkeypatch):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    sqlite = load_config(DEMO_CONFIG, ["sweep.storage=sqlite:////tmp/o.db?password=SECRET123"])
    with pytest.raises(InputError) as raised:
        passwords_moved_to_environment(sqlite)
    assert (
        str(raised.value)
        == "a sqlite URL takes no password here (sqlite:////tmp/o.db?password=***): drop it from the URL"
    )
    two = load_config(
        DEMO_CONFIG,
        ["sweep.storage=postgresql://a:one@db/optuna", "registry.tracking_uri=postgresql://b:two@db/mlflow"],
    )
    with pytest.raises(InputError) as raised:
        passwords_moved_to_environment(two)
    assert str(raised.value) == (
        "registry.tracking_uri and sweep.storage both need PGPASSWORD, with different values: set PGPASSWORD in the "
        "environment and drop the passwords from the URLs"
    )
    assert "PGPASSWORD" not in os.environ
