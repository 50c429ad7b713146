"""The version of the code behind a stage: its module, every project module it imports (transitively), and the
versions of the libraries among those imports that decide its output.

A stage's cache key and its output and checkpoint directories include this fingerprint, so a change to a helper
module (say `tunegate/lm/sft_data.py`, which decides what the trainer sees) reruns the stages that use it and never
resumes a checkpoint written by the old code; an unrelated module (`tunegate/registry/serving.py`) changes nothing.
The closure is read from the import statements (function-local ones included), not from `sys.modules`,
so it is the same in every process whatever was imported first.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from tunegate.core.fingerprint import combine, fingerprint_file

# Libraries whose version changes what a stage writes (weights, sampled trials, validation verdicts, Parquet bytes).
OUTPUT_LIBRARIES = ("torch", "transformers", "peft", "trl", "datasets", "optuna", "great_expectations", "pyarrow")
# pandas writes and reads Parquet through pyarrow: a module that imports pandas depends on pyarrow's version.
IMPLIED_LIBRARIES = {"pandas": ("pyarrow",)}


def code_fingerprint(module_file: str | Path) -> str:
    """sha256 over the module closure's files (by path relative to the project root) and library versions."""
    return code_fingerprint_of(str(Path(module_file).resolve()))


@lru_cache(maxsize=256)
def code_fingerprint_of(module_file: str) -> str:
    root = project_root(Path(module_file))
    files, libraries = module_closure(Path(module_file), root)
    parts = [f"{path.relative_to(root).as_posix()}={fingerprint_file(path)}" for path in sorted(files)]
    parts += [f"{name}=={library_version(name)}" for name in sorted(libraries)]
    return combine(*parts)


def library_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def project_root(module_file: Path) -> Path:
    """The directory that holds the module's top-level package (the one on sys.path)."""
    directory = module_file.parent
    while (directory / "__init__.py").is_file():
        directory = directory.parent
    return directory


def module_closure(start: Path, root: Path) -> tuple[set[Path], set[str]]:
    """(project module files reachable from `start` by imports, output libraries they import)."""
    files, libraries, pending = set(), set(), [start]
    while pending:
        path = pending.pop()
        if path in files:
            continue
        files.add(path)
        for name in imported_names(path):
            top = name.split(".")[0]
            libraries.update({top} & set(OUTPUT_LIBRARIES))
            libraries.update(IMPLIED_LIBRARIES.get(top, ()))
            pending.extend(project_files(name, root))
    return files, libraries


def imported_names(path: Path) -> set[str]:
    """Dotted names of every module an `import` or `from … import` in the file may refer to (absolute imports;
    `from a import b` yields both `a` and `a.b`, since b may be a submodule)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def project_files(dotted: str, root: Path) -> list[Path]:
    """The files under `root` that importing `dotted` executes: each package's __init__.py and the module."""
    parts, found = dotted.split("."), []
    for depth in range(1, len(parts) + 1):
        base = root.joinpath(*parts[:depth])
        for candidate in (base / "__init__.py", base.with_suffix(".py")):
            if candidate.is_file():
                found.append(candidate.resolve())
    return found
