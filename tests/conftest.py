"""Shared fixtures: one real Prefect server for the session, isolated Prefect home, small data files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before Prefect is imported: results, database and logs of the tests live in a throwaway home, so a
# cache entry from an earlier session can never turn a "Completed" into a "Cached".
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="tunegate-prefect-")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO_DATA = REPO / "demo" / "data"


@pytest.fixture(scope="session", autouse=True)
def prefect_server():
    """A real Prefect API server (SQLite) for every flow and task run in the session."""
    with prefect_test_harness(server_startup_timeout=90):
        yield


def write_text(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)
