"""One-way layering: flows → tasks → tunegate (and data_checks), never back; a stage never imports another stage;
inside `tunegate/` the subpackages import only the ones below them, and no modules import each other in a circle.
Read from every import statement in the sources, in every subfolder (function-local ones included), so a lazy
import counts too."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REPO
from tunegate.runtime.code_version import imported_names

# What each package may not import (by top-level package, or for tasks: another stage module).
FORBIDDEN = {"tunegate": ("tasks", "flows"), "data_checks": ("tasks", "flows"), "tasks": ("flows",)}
# tunegate's floors, top first: a module may import its own subpackage and those after it, never one before it.
# `cli` is the root module `tunegate/cli.py`.
SUBPACKAGE_ORDER = (
    "cli",
    "reporting",
    "registry",
    "sweep",
    "training",
    "evaluation",
    "lm",
    "data",
    "runtime",
    "config",
    "ops",
    "core",
)


def modules(package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module under the package's folder (subfolders included)."""
    found = {}
    for path in sorted((REPO / package).rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_modules(path: Path, known: dict[str, Path]) -> set[str]:
    """The known modules a file imports (`from a.b import c` is module a.b.c when that is a module, else a.b)."""
    found = set()
    for name in imported_names(path):
        parts = name.split(".")
        for depth in range(len(parts), 0, -1):
            if ".".join(parts[:depth]) in known:
                found.add(".".join(parts[:depth]))
                break
    return found


def back_edges() -> list[str]:
    edges = []
    for package, forbidden in FORBIDDEN.items():
        for module, path in modules(package).items():
            for name in sorted(imported_names(path)):
                parts = name.split(".")
                other_stage = package == "tasks" and parts[0] == "tasks" and len(parts) > 1
                if parts[0] in forbidden or (
                    other_stage and parts[1] != module.split(".")[-1] and module_exists(parts[:2])
                ):
                    edges.append(f"{module} -> {'.'.join(parts[:2])}")
    return sorted(set(edges) | set(upward_imports()))


def module_exists(parts: list[str]) -> bool:
    return (REPO.joinpath(*parts).with_suffix(".py")).is_file()


def floor(module: str) -> int:
    """The module's subpackage's place in SUBPACKAGE_ORDER (the package's own __init__ sits at the bottom)."""
    parts = module.split(".")
    return SUBPACKAGE_ORDER.index(parts[1]) if len(parts) > 1 else len(SUBPACKAGE_ORDER)


def upward_imports() -> list[str]:
    """Imports inside tunegate that point at a subpackage above the importer's own."""
    known = modules("tunegate")
    return [
        f"{module} -> {other}"
        for module, path in known.items()
        for other in sorted(imported_modules(path, known))
        if floor(other) < floor(module)
    ]


def import_circles() -> list[list[str]]:
    """Every circle of imports among tunegate's modules, each as the path that closes it."""
    known = modules("tunegate")
    graph = {module: sorted(imported_modules(path, known) - {module}) for module, path in known.items()}
    circles, state, path = [], {}, []

    def visit(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for other in graph[module]:
            if state.get(other) == "open":
                circles.append([*path[path.index(other) :], other])
            elif other not in state:
                visit(other)
        path.pop()
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module)
    return circles


def test_every_subpackage_and_root_module_has_a_floor():
    subpackages = {path.parent.name for path in (REPO / "tunegate").glob("*/__init__.py")}
    root_modules = {path.stem for path in (REPO / "tunegate").glob("*.py")} - {"__init__"}
    assert subpackages | root_modules == set(SUBPACKAGE_ORDER)


def test_no_module_imports_against_the_layering():
    assert back_edges() == []


def test_no_modules_import_each_other_in_a_circle():
    assert import_circles() == []


def test_the_check_sees_a_back_edge(tmp_path, monkeypatch):
    """The check itself can fail: a support module that imports a stage is reported, and so is one in a subfolder
    that imports a subpackage above it."""
    (tmp_path / "tunegate" / "core").mkdir(parents=True)
    (tmp_path / "tunegate" / "training").mkdir()
    for folder in ("tunegate", "tunegate/core", "tunegate/training"):
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "tunegate" / "bad.py").write_text("def f():\n    from tasks.train import train_candidate\n")
    (tmp_path / "tunegate" / "training" / "job.py").write_text("from tunegate.core.errors import InputError\n")
    (tmp_path / "tunegate" / "core" / "errors.py").write_text("from tunegate.training.job import TrainingJob\n")
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "train.py").write_text("")
    (tmp_path / "tasks" / "sweep.py").write_text("from tasks.train import train_candidate\n")
    monkeypatch.setattr("tests.test_layering.REPO", tmp_path)
    assert back_edges() == [
        "tasks.sweep -> tasks.train",
        "tunegate.bad -> tasks.train",
        "tunegate.core.errors -> tunegate.training.job",
    ]
    assert import_circles() == [["tunegate.core.errors", "tunegate.training.job", "tunegate.core.errors"]]


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
