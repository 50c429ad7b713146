"""`tunegate base`: the catalogue listed with what is fetched here, and every refusal one line with exit 2, naming
the command that fixes it. An empty bases cache ($TUNEGATE_BASES): nothing is downloaded."""

from __future__ import annotations

import pytest

from tunegate.lm.base_catalogue import CATALOGUE
from tunegate.lm.base_command import main


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEGATE_BASES", str(tmp_path / "bases"))
    return tmp_path / "bases"


def test_list_shows_every_catalogue_base_as_not_fetched_in_an_empty_cache(empty_cache, capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(CATALOGUE)
    assert all(line.endswith("not fetched") for line in lines)
    smollm2 = next(line for line in lines if line.startswith("smollm2-135m-instruct"))
    assert smollm2.split()[1:3] == ["Apache-2.0", "instruct"]


def test_path_of_a_base_not_fetched_names_the_command_that_fetches_it(empty_cache, capsys):
    assert main(["path", "smollm2-135m-instruct"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"error: model.base 'smollm2-135m-instruct': not fetched yet (or changed) under {empty_cache}: run "
        "`tunegate base get smollm2-135m-instruct` (or `make base`) first"
    )


def test_get_of_an_unknown_name_lists_the_catalogue(empty_cache, capsys):
    assert main(["get", "llama-70b"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == f"error: base 'llama-70b': not in the catalogue (known: {', '.join(CATALOGUE)})"
    assert not empty_cache.exists()  # nothing was fetched or created


def test_an_unknown_action_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["fetch", "smollm2-135m-instruct"])
    assert exited.value.code == 2
    assert "invalid choice: 'fetch'" in capsys.readouterr().err
