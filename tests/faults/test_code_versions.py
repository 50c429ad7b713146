"""Fault class 2: results and checkpoints made by other code are never reused. A stage's cache key and its
directories follow every project module it imports (transitively) and the libraries that decide its output."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO
from tunegate.runtime.code_version import code_fingerprint, code_fingerprint_of, library_version, module_closure
from tunegate.runtime.stages import stage_directory


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
    edit(project_copy / "tunegate" / "core" / "fingerprint.py")  # split → core.refs → core.fingerprint
    assert code_fingerprint(split) != before


def test_a_module_the_stage_does_not_import_leaves_its_key_alone(project_copy):
    split, sweep = project_copy / "tasks" / "split.py", project_copy / "tasks" / "sweep.py"
    before = code_fingerprint(split), code_fingerprint(sweep)
    edit(project_copy / "tunegate" / "lm" / "sft_data.py")  # training code: the sweep uses it, the split does not
    assert code_fingerprint(split) == before[0]
    assert code_fingerprint(sweep) != before[1]


def test_the_study_report_is_not_part_of_the_trials_code(project_copy):
    """The plots are drawn by the flow after the sweep: their HTML does not name the study (`study_for` keys it on
    the sweep module's code) nor key a trial (its task's cache key and directory follow the same code)."""
    sweep = project_copy / "tasks" / "sweep.py"
    before = code_fingerprint(sweep), stage_directory("/home", "trials/trial", str(sweep), "params", "data")
    plots = project_copy / "tunegate" / "sweep" / "plots.py"
    plots.write_text(plots.read_text(encoding="utf-8").replace("<h1>Study ", "<h1>Optuna study "), encoding="utf-8")
    code_fingerprint_of.cache_clear()
    assert (code_fingerprint(sweep), stage_directory("/home", "trials/trial", str(sweep), "params", "data")) == before
    edit(project_copy / "tunegate" / "sweep" / "trials.py")  # trial bookkeeping is the trials' code
    assert code_fingerprint(sweep) != before[0]


def test_a_train_field_description_does_not_rerun_the_data_stages(project_copy):
    data_stages = [project_copy / "tasks" / f"{name}.py" for name in ("ingest", "validate", "deduplicate", "split")]
    sweep = project_copy / "tasks" / "sweep.py"
    before = [code_fingerprint(stage) for stage in data_stages], code_fingerprint(sweep)
    train = project_copy / "tunegate" / "config" / "train.py"
    text = train.read_text(encoding="utf-8")
    assert 'description="Peak learning rate' in text
    train.write_text(text.replace('description="Peak learning rate', 'description="The peak learning rate'), "utf-8")
    code_fingerprint_of.cache_clear()
    assert [code_fingerprint(stage) for stage in data_stages] == before[0]
    assert code_fingerprint(sweep) != before[1]


def test_the_checkpoint_directory_moves_with_the_training_code(project_copy):
    sweep = str(project_copy / "tasks" / "sweep.py")
    before = stage_directory("/home", "trials/trial", sweep, "params", "data")
    # Imported inside functions of tunegate/training/sft.py and run_watch.py:
    edit(project_copy / "tunegate" / "training" / "callbacks.py")
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
