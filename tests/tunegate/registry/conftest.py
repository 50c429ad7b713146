"""Fixtures of the registry tests: a real MLflow registry (SQLite) with two adapters and a test table."""

from tests.fixtures.registry import registry_setup  # noqa: F401 (a fixture, used by name)
