"""The README's configuration reference, written from the config model itself: every field's dotted path, default
and description, so the table cannot fall behind the code (the hand-kept one had, by 2026-12-04, the LoRA rate range
of an earlier release and none of `eval.retention`, `eval.baseline` or most of `registry`).

`python -m tunegate.config.reference` prints the table; tests/test_readme.py checks the README holds it.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from tunegate.config.pipeline import PipelineConfig

TABLE_HEADER = "| field | default | what it does |\n|---|---|---|"


def reference_table(model: type[BaseModel] = PipelineConfig) -> str:
    """The Markdown table of every field of `model` and of the sections inside it, depth first."""
    rows = [f"| `{path}` | {default} | {description} |" for path, default, description in field_rows(model)]
    return "\n".join([TABLE_HEADER, *rows])


def field_rows(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str, str]]:
    """(dotted path, default as written in the table, description) of each field; a section's own row says
    `section` (or `list of section`) and its fields follow it, a list's items under `path[].`."""
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        description = (field.description or "").replace("|", "\\|")
        section, in_list = section_model(field.annotation)
        if section is None:
            yield path, default_text(field), description
            continue
        yield path, "list of section" if in_list else "section", description
        yield from field_rows(section, f"{path}[]." if in_list else f"{path}.")


def section_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The config model a field holds (directly, optionally or as a list of them) and whether it is a list.

    >>> from tunegate.config.data import DataConfig, SourceConfig
    >>> section_model(list[SourceConfig]) == (SourceConfig, True)
    True
    >>> section_model(DataConfig | None) == (DataConfig, False)
    True
    >>> section_model(int), section_model(list[str])
    ((None, False), (None, False))
    """
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is list and args:
        inner, _ = section_model(args[0])
        return inner, inner is not None
    if origin in (Union, types.UnionType):
        models = [section_model(arg) for arg in args if arg is not type(None)]
        return models[0] if len(models) == 1 else (None, False)
    return None, False


def default_text(field: FieldInfo) -> str:
    """`required`, or the default as Python writes it (a factory's value for mutable defaults)."""
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
    return repr(value).replace("|", "\\|")


if __name__ == "__main__":
    print(reference_table())
