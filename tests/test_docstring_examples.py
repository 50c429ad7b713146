"""The `>>>` examples in the package's and the benchmarks' docstrings run as tests: an example that no longer holds
fails here."""

from __future__ import annotations

import doctest
import importlib

import pytest

from tests.conftest import REPO


def modules_with_examples() -> list[str]:
    return sorted(
        ".".join(path.relative_to(REPO).with_suffix("").parts)
        for folder in ("tunegate", "bench")
        for path in (REPO / folder).rglob("*.py")
        if ">>> " in path.read_text()
    )


def test_the_package_has_docstring_examples():
    assert {"tunegate.training.budget", "bench.methods"} <= set(modules_with_examples())


@pytest.mark.parametrize("module_name", modules_with_examples())
def test_docstring_examples_hold(module_name):
    results = doctest.testmod(importlib.import_module(module_name), optionflags=doctest.ELLIPSIS)
    assert results.attempted > 0 and results.failed == 0
