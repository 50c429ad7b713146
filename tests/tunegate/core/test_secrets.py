"""Redaction: the password of a URI, in its user info or in a query parameter named like a secret, becomes ***."""

from __future__ import annotations

import pytest

from tunegate.core.secrets import redact, redact_value


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://me:s3:cr@t@db:5432/optuna", "postgresql://me:***@db:5432/optuna"),
        ("sqlite:////tmp/o.db?password=SECRET123", "sqlite:////tmp/o.db?password=***"),
        (
            "postgresql://me@db/x?sslmode=require&password=p%40ss&x=1",
            "postgresql://me@db/x?sslmode=require&password=***&x=1",
        ),
        ("http://h/?api_key=abc;access_token=def#top", "http://h/?api_key=***;access_token=***#top"),
        ("https://me:pw@host/p?keyword=ok&PASSWORD=X", "https://me:***@host/p?keyword=ok&PASSWORD=***"),
        ("no URI here: password=x", "no URI here: password=x"),
    ],
)
def test_a_uri_is_shown_without_its_secrets(text, shown):
    assert redact(text) == shown


def test_every_string_of_a_summary_is_redacted():
    summary = {"sweep": {"storage": "sqlite:///o.db?password=SECRET"}, "list": ["http://u:p@h", 3]}
    assert redact_value(summary) == {"sweep": {"storage": "sqlite:///o.db?password=***"}, "list": ["http://u:***@h", 3]}
