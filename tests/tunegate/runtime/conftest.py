"""A real Dask cluster (scheduler + two workers) for the tests here that run trials on it."""

from tests.fixtures.services import dask_cluster  # noqa: F401 (a fixture, used by name)
