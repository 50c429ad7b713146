"""Errors the user can act on: one line each, and the families the CLI maps to its exit codes."""

from __future__ import annotations

import pytest

from tunegate.core.errors import (
    AccountingError,
    DataContractError,
    InputError,
    LeakageError,
    ServiceUnavailable,
    one_line,
)


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (
            InputError("data/x.csv line 4, field label: expected one of [a, b] (got 'c')"),
            "data/x.csv line 4, field label: expected one of [a, b] (got 'c')",
        ),
        (ValueError("\n\n  first real line  \nsecond line\nthird"), "first real line  "),
        (RuntimeError("only line\n"), "only line"),
        (KeyError("gone"), "'gone'"),
        (ValueError(""), "ValueError"),
        (ServiceUnavailable("   \n  "), "ServiceUnavailable"),
    ],
)
def test_one_line_is_the_first_non_empty_line_of_the_message_or_the_type_name(error, line):
    assert one_line(error) == line


def test_a_data_contract_breach_is_an_input_error_and_the_pipelines_own_faults_are_not():
    # The CLI answers InputError (and so DataContractError) as the user's to fix (exit 2); the others are not.
    assert issubclass(DataContractError, InputError)
    assert [issubclass(kind, InputError) for kind in (AccountingError, LeakageError, ServiceUnavailable)] == [False] * 3
