"""Fixtures shared with the stage tests: a real MLflow registry (SQLite) with two adapters and a test table."""
