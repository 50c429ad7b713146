"""One-way layering: flows → tasks → tunegate (and data_checks), never back; a stage never imports another stage.
Read from every import statement in the sources (function-local ones included), so a lazy import counts too."""

from __future__ import annotations

from tests.conftest import REPO
from tunegate.code_version import imported_names

# What each package may not import (by top-level package, or for tasks: another stage module).
FORBIDDEN = {"tunegate": ("tasks", "flows"), "data_checks": ("tasks", "flows"), "tasks": ("flows",)}


def back_edges() -> list[str]:
    edges = []
    for package, forbidden in FORBIDDEN.items():
        for path in sorted((REPO / package).glob("*.py")):
            module = f"{package}.{path.stem}"
            for name in sorted(imported_names(path)):
                parts = name.split(".")
                other_stage = package == "tasks" and parts[0] == "tasks" and len(parts) > 1
                if parts[0] in forbidden or (other_stage and parts[1] != path.stem and module_exists(parts[:2])):
                    edges.append(f"{module} -> {'.'.join(parts[:2])}")
    return sorted(set(edges))


def module_exists(parts: list[str]) -> bool:
    return (REPO.joinpath(*parts).with_suffix(".py")).is_file()


def test_no_module_imports_against_the_layering():
    assert back_edges() == []


def test_the_check_sees_a_back_edge(tmp_path, monkeypatch):
    """The check itself can fail: a support module that imports a stage is reported."""
    (tmp_path / "tunegate").mkdir()
    (tmp_path / "tunegate" / "bad.py").write_text("def f():\n    from tasks.train import train_candidate\n")
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "train.py").write_text("")
    (tmp_path / "tasks" / "sweep.py").write_text("from tasks.train import train_candidate\n")
    monkeypatch.setattr("tests.test_layering.REPO", tmp_path)
    assert back_edges() == ["tasks.sweep -> tasks.train", "tunegate.bad -> tasks.train"]


def wide_task_signatures() -> list[str]:
    """Stage tasks (functions decorated with `@task`) that take more than 6 parameters: a sign that a reference
    object (a TableRef, a TrainingJob, the config section) is missing."""
    import ast

    wide = []
    for path in sorted((REPO / "tasks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            decorated = isinstance(node, ast.FunctionDef) and any(
                "task" in ast.unparse(decorator) for decorator in node.decorator_list
            )
            if decorated and len(node.args.posonlyargs + node.args.args + node.args.kwonlyargs) > 6:
                wide.append(f"tasks/{path.name}:{node.name}")
    return wide


def test_no_stage_task_takes_more_than_six_parameters():
    assert wide_task_signatures() == []
