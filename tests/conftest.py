"""Shared fixtures: one real Prefect server for the session (all workers), isolated Prefect home, small data files."""

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
# The pipeline uses no Prefect blocks; registering Prefect's block types is ~5 s of one core on every fresh database
# (measured: a test server starts in 17.3 s with it, 12.2 s without).
os.environ.setdefault("PREFECT_API_BLOCKS_REGISTER_ON_START", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402

from tests.fixtures import prefect_server  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO_DATA = REPO / "demo" / "data"
SERVER_URL_FILE = "TUNEGATE_TEST_PREFECT_URL_FILE"
SESSION_SERVER = pytest.StashKey()

# The test files that take minutes, longest first (seconds of one pytest-xdist worker each, `make test` on 2 cores,
# 2026-12-03): they start first, so the two workers end together. pytest-xdist's own order (files with the most
# tests first) left the one-test files last: a 4-minute deployment run alone at the end, 1,442 s of wall clock for
# 2,328 s of tests. The rest keep their collection order.
LONGEST_FIRST = [
    "tests/deployments/test_end_to_end.py",  # 252
    "tests/deployments/test_scale_out.py",  # 239
    "tests/flows/test_real_bases.py",  # 231
    "tests/faults/test_crash_recovery.py",  # 197
    "tests/faults/test_services_down.py",  # 194
    "tests/tunegate/runtime/test_runners.py",  # 185
    "tests/flows/test_finetune.py",  # 150
    "tests/tunegate/training/test_distributed.py",  # 140
    "tests/flows/test_gemma_base.py",  # 122
    "tests/faults/test_cache_verification.py",  # 120
    "tests/tunegate/training/test_dpo.py",  # 95
    "tests/test_readme.py",  # 93 (a toy run registers the champion its serve and load blocks use)
    "tests/faults/test_bad_config_and_environment.py",  # 85
    "tests/tasks/test_train.py",  # 70
    "tests/flows/test_prepare_data.py",  # 45
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest files first (`LONGEST_FIRST`); `make test` keeps this order (--no-loadscope-reorder)."""
    rank = {path: position for position, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.relative_to(REPO).as_posix(), len(rank)))


def pytest_configure(config: pytest.Config) -> None:
    """Start the session's Prefect server (tests/fixtures/prefect_server.py) before pytest-xdist starts its workers."""
    if hasattr(config, "workerinput") or config.option.collectonly or config.option.help:
        return  # a worker uses the server its controller started; collecting runs nothing
    server_dir = Path(tempfile.mkdtemp(prefix="tunegate-prefect-server-"))
    os.environ[SERVER_URL_FILE] = str(server_dir / "api-url")  # the workers inherit it
    config.stash[SESSION_SERVER] = prefect_server.start(server_dir / "api-url", server_dir / "server.log")


def pytest_unconfigure(config: pytest.Config) -> None:
    if SESSION_SERVER in config.stash:
        prefect_server.stop(config.stash[SESSION_SERVER])


@pytest.fixture(scope="session", autouse=True)
def prefect_server_api():
    """Every flow and task run of this process reports to the session's real Prefect API server (SQLite)."""
    # Imported here, not at the top: pytest-xdist's controller loads this file before it starts the workers, and
    # Prefect's import (~4.5 s of one core here) would hold both workers back; only the workers run fixtures.
    import prefect.context
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url_file = Path(os.environ[SERVER_URL_FILE])
    url = prefect_server.wait_for_url(url_file, url_file.with_name("server.log"))
    # As prefect_test_harness does: the settings of this context, and the process-wide ones for contexts copied
    # before this fixture ran.
    with temporary_settings(updates={PREFECT_API_URL: url}):
        with prefect.context._temporary_global_settings_context(prefect.context.get_settings_context()):
            yield


def write_text(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)
