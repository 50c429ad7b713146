"""The `eval:` and `registry:` sections: the retention set drift is measured on, and the registry's names and URIs
checked when the config loads."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO
from tunegate.config.loading import load_config
from tunegate.config.registry import RETENTION_SET, RetentionConfig, retention_path
from tunegate.core.errors import InputError

DEMO_CONFIG = REPO / "deployments" / "demo.yaml"


def test_the_shipped_retention_set_is_used_unless_a_file_is_configured():
    assert retention_path(RetentionConfig()) == str(RETENTION_SET)
    assert retention_path(RetentionConfig(path="mine.jsonl")) == "mine.jsonl"
    shipped = [json.loads(line) for line in RETENTION_SET.read_text(encoding="utf-8").splitlines()]
    assert len(shipped) == 209 and all(row["prompt"].strip() for row in shipped)
    assert (RetentionConfig().rows, RetentionConfig().max_new_tokens, RetentionConfig().match_tokens) == (100, 32, 8)


def test_the_retention_file_fingerprint_follows_the_configured_file(tmp_path):
    mine = tmp_path / "mine.jsonl"
    mine.write_text('{"prompt": "Name three colours.", "completion": ""}\n', encoding="utf-8")
    shipped = load_config(DEMO_CONFIG, [f"home={tmp_path}"]).retention_settings()
    configured = load_config(DEMO_CONFIG, [f"home={tmp_path}", f"eval.retention.path={mine}"]).retention_settings()
    assert shipped.retention_fingerprint != configured.retention_fingerprint != ""
    mine.write_text('{"prompt": "Name four colours.", "completion": ""}\n', encoding="utf-8")
    edited = load_config(DEMO_CONFIG, [f"home={tmp_path}", f"eval.retention.path={mine}"]).retention_settings()
    assert edited.retention_fingerprint != configured.retention_fingerprint  # an edited file is a new set
    off = load_config(DEMO_CONFIG, [f"home={tmp_path}", "eval.retention.rows=0"]).retention_settings()
    assert off.retention_fingerprint == ""  # drift off: nothing to read


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "registry.model_name=team/model",
            "field registry.model_name: Invalid model name 'team/model'. Names cannot contain '/' or ':'. "
            "(got 'team/model')",
        ),
        (
            "registry.tracking_uri=ftp://host/x",
            "field registry.tracking_uri: unsupported scheme 'ftp' in ftp://host/x; expected one of ('file', 'http', "
            "'https', 'databricks', 'sqlite', 'postgresql', 'mysql', 'oracle', 'mssql') (got 'ftp://host/x')",
        ),
    ],
)
def test_registry_names_and_uris_are_checked_at_load(override, message):
    with pytest.raises(InputError) as raised:
        load_config(DEMO_CONFIG, [override])
    assert str(raised.value) == f"{DEMO_CONFIG}: {message}"
