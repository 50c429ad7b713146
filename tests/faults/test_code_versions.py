"""Fault class 2: results and checkpoints made by other code are never reused. A stage's cache key and its
directories follow every project module it imports (transitively) and the libraries that decide its output."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO
from tunegate.code_version import code_fingerprint, code_fingerprint_of, library_version, module_closure
from tunegate.stages import stage_directory


@pytest.fixture
def project_copy(tmp_path) -> Path:
    for package in ("tasks", "tunegate", "data_checks"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    code_fingerprint_of.cache_clear()
    yield tmp_path
    code_fingerprint_of.cache_clear()


def edit(path: Path) -> None:
    path.write_text(path.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    code_fingerprint_of.cache_clear()


def test_a_helper_module_two_imports_away_changes_the_stage_key(project_copy):
    split = project_copy / "tasks" / "split.py"
    before = code_fingerprint(split)
    edit(project_copy / "tunegate" / "fingerprint.py")  # split → tunegate.refs → tunegate.fingerprint
    assert code_fingerprint(split) != before


def test_a_module_the_stage_does_not_import_leaves_its_key_alone(project_copy):
    split, sweep = project_copy / "tasks" / "split.py", project_copy / "tasks" / "sweep.py"
    before = code_fingerprint(split), code_fingerprint(sweep)
    edit(project_copy / "tunegate" / "sft_data.py")  # training code: the sweep uses it, the split does not
    assert code_fingerprint(split) == before[0]
    assert code_fingerprint(sweep) != before[1]


def test_the_checkpoint_directory_moves_with_the_training_code(project_copy):
    sweep = str(project_copy / "tasks" / "sweep.py")
    before = stage_directory("/home", "trials/trial", sweep, "params", "data")
    edit(project_copy / "tunegate" / "callbacks.py")  # imported inside a function of tunegate/training.py
    after = stage_directory("/home", "trials/trial", sweep, "params", "data")
    assert before.parent == after.parent == Path("/home/trials")
    assert before != after


def test_the_training_stage_depends_on_the_versions_of_the_libraries_it_imports():
    _, libraries = module_closure((REPO / "tasks" / "sweep.py").resolve(), REPO)
    assert sorted(libraries) == ["datasets", "optuna", "peft", "pyarrow", "torch", "transformers", "trl"]
    _, libraries = module_closure((REPO / "tasks" / "validate.py").resolve(), REPO)
    assert sorted(libraries) == ["great_expectations", "peft", "pyarrow", "transformers"]
    _, libraries = module_closure((REPO / "tasks" / "split.py").resolve(), REPO)
    assert sorted(libraries) == ["pyarrow"]
    assert library_version("torch") == torch.__version__
