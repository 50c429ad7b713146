"""What registration and the exports return: a cached registration holds only while its version still loads from
the artifact store; an export result lists the builds beside the adapter."""

from __future__ import annotations

import shutil

import pytest

from tests.fixtures.registry import register
from tunegate.registry.results import ExportedBuild, ExportResult


@pytest.mark.slow  # a real registration: the adapter logged as an MLflow pyfunc model
def test_a_registered_version_holds_while_its_model_files_are_in_the_artifact_store(registry_setup, tmp_path):
    config, tracking, rows, adapters = registry_setup
    registered = register(config, tracking, rows, adapters[0], right=8)
    assert (registered.version, registered.output_problems()) == ("1", [])
    shutil.rmtree(tmp_path / "mlartifacts")  # the store's folder deleted, the registry database kept
    assert registered.output_problems() == ["concurrent-model v1 has no model files in the artifact store"]
    # A result that names no registry has nothing to ask: it is taken as it is.
    assert registered.model_copy(update={"tracking_uri": ""}).output_problems() == []


def test_the_exports_are_the_builds_other_than_the_adapter():
    builds = [ExportedBuild(name=name, reason="measured") for name in ("adapter", "merged", "int8")]
    result = ExportResult(task_metric="accuracy", base_model="base", builds=builds)
    assert [build.name for build in result.exports()] == ["merged", "int8"]
    assert ExportResult(task_metric="accuracy", base_model="base").exports() == []
