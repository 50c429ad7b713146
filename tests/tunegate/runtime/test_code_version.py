"""A stage's code version is its module's import closure within the project (function-local imports included)
and the versions of the output libraries among those imports; a module it does not import changes nothing."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import write_text
from tunegate.runtime.code_version import code_fingerprint_of, imported_names, module_closure, project_root


def tiny_project(root: Path) -> Path:
    write_text(root / "pkg" / "__init__.py", "")
    write_text(root / "pkg" / "stage.py", "import json\nfrom pkg import helper\n\ndef run():\n    import pkg.late\n")
    write_text(root / "pkg" / "helper.py", "import pandas as pd\n")
    write_text(root / "pkg" / "late.py", "import torch\n")
    write_text(root / "pkg" / "unrelated.py", "import optuna\n")
    return root / "pkg" / "stage.py"


def test_the_closure_follows_project_imports_and_names_the_output_libraries(tmp_path):
    stage = tiny_project(tmp_path)
    files, libraries = module_closure(stage, project_root(stage))
    package = tmp_path / "pkg"
    assert sorted(path.name for path in files) == ["__init__.py", "helper.py", "late.py", "stage.py"]
    assert all(path.parent == package for path in files)
    assert sorted(libraries) == ["pyarrow", "torch"]  # pandas writes Parquet through pyarrow; json is not one
    assert imported_names(stage) == {"json", "pkg", "pkg.helper", "pkg.late"}


def test_only_a_change_inside_the_closure_changes_the_code_version(tmp_path):
    stage = tiny_project(tmp_path)
    before = code_fingerprint_of(str(stage))
    (tmp_path / "pkg" / "unrelated.py").write_text("import optuna\nVALUE = 2\n")
    code_fingerprint_of.cache_clear()
    assert code_fingerprint_of(str(stage)) == before
    (tmp_path / "pkg" / "late.py").write_text("import torch\nVALUE = 2\n")
    code_fingerprint_of.cache_clear()
    assert code_fingerprint_of(str(stage)) != before
