"""The README's command blocks run as written (issue 28): every `bash` block of README.md and bench/README.md,
read by pytest-codeblocks, runs in bash from a fresh working copy of the checkout, in an environment a new
terminal has (PATH without .venv/bin, none of the suite's variables), and must exit 0. Test ids name the block by
file and line (`README.md:843`).

A block says what it needs in an HTML comment on the line before its fence, which pytest-codeblocks reads as a
pytest mark: `<!--pytest.mark.skip(reason="...")-->` for a block the suite cannot run as written (a synopsis, or
minutes of work another test covers: the reason names it), `<!--pytest.mark.readme_needs("registered_champion")-->`
for one that follows an earlier, skipped step (here: `make demo` has registered a champion in `.tunegate`)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from pytest_codeblocks import extract_from_file

from tests.conftest import REPO
from tests.fixtures.runs import TINY

pytestmark = pytest.mark.slow
README_FILES = ["README.md", "bench/README.md"]
SHELLS = {"bash", "sh"}
# What a fresh terminal has: the system PATH, a home (the bases' cache is ~/.cache/tunegate), a locale.
FRESH_TERMINAL = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ["HOME"], "LANG": "C.UTF-8"}
BLOCK_TIMEOUT_SECONDS = 600


def readme_blocks() -> list:
    """One pytest.param per shell block, marked as its README comment says, named `<file>:<line>`."""
    blocks = []
    for name in README_FILES:
        for block in extract_from_file(REPO / name):
            if block.syntax in SHELLS:
                marks = [eval(mark, {"pytest": pytest}) for mark in block.marks]  # noqa: S307 (our own README)
                blocks.append(pytest.param(block.code, marks=marks, id=f"{name}:{block.lineno}"))
    return blocks


@pytest.fixture(scope="module")
def working_copy(tmp_path_factory) -> Path:
    """The checkout's files (tracked and untracked, not ignored; times kept, so make sees the venv up to date) in
    a new directory, with the checkout's .venv linked in: what a clone has after `make install`."""
    copy = tmp_path_factory.mktemp("checkout")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for relative in filter(None, listed.split("\0")):
        source = REPO / relative
        if source.is_file():
            (copy / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / relative)
    (copy / ".venv").symlink_to(REPO / ".venv")
    return copy


@pytest.fixture(scope="module")
def registered_champion(working_copy: Path) -> dict:
    """`make demo`'s outcome in the copy's `.tunegate`, on the toy base with tiny budgets (SmolLM2 takes ~20
    minutes): the registered model `support-demo` with its champion alias; the run's summary."""
    from flows.finetune import finetune
    from tunegate.config.loading import load_config
    from tunegate.reporting.report import finetune_summary

    config = load_config(
        working_copy / "deployments" / "demo_tiny.yaml",
        [
            f"home={working_copy / '.tunegate'}",
            f"data.sources.0.path={working_copy / 'demo' / 'data' / 'tickets.csv'}",
            f"data.sources.1.path={working_copy / 'demo' / 'data' / 'replies.jsonl'}",
            *TINY,
        ],
    )
    summary = finetune_summary(finetune(config))
    assert summary["registry"]["aliases"] == ["champion"]
    return summary


def end_process_group(group: int) -> None:
    """SIGTERM to what the block left running (a server started with `&`), then wait until the group is gone."""
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(group, signal.SIGKILL)


@pytest.mark.parametrize("code", readme_blocks())
def test_readme_block_runs_as_written_in_a_fresh_terminal(code: str, working_copy: Path, request) -> None:
    for needs in request.node.iter_markers("readme_needs"):
        request.getfixturevalue(*needs.args)
    output = working_copy / f"block-{request.node.callspec.id.replace('/', '_')}.log"
    # Into a file, not a pipe: a server the block starts with `&` keeps its stdout open after the block ends.
    with output.open("w") as log:
        block = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", code],
            cwd=working_copy,
            env=FRESH_TERMINAL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            block.wait(timeout=BLOCK_TIMEOUT_SECONDS)
        finally:
            end_process_group(block.pid)
    assert block.returncode == 0, output.read_text()[-4000:]


def line_labels(text: str) -> list[str]:
    """Each non-blank line's first word, without a trailing colon (`rows_read`, `sweep`, `fine-tuned`): what a
    report line is, whatever its numbers."""
    return [re.split(r"[\s:]", line.strip(), maxsplit=1)[0] for line in text.splitlines() if line.strip()]


def labels_pattern(sample_labels: list[str]) -> re.Pattern:
    """The sample's labels in order, each `...` line standing for any number of elided lines."""
    parts = [r"(?:[^\n]*\n)*?" if label == "..." else re.escape(label) + r"\n" for label in sample_labels]
    return re.compile("".join(parts))


def test_the_readme_sample_output_has_the_report_lines_a_run_prints_today(registered_champion: dict) -> None:
    """The `make demo` sample in the README, compared by its line labels (not its numbers) with the reports a
    finetune run prints now (the toy base's run of `registered_champion`: the same report code and data)."""
    from tunegate.reporting.report import render_finetune_report

    (sample,) = [b.code for b in extract_from_file(REPO / "README.md") if b.code.startswith("Data report\n")]
    printed = "\n".join(line_labels(render_finetune_report(registered_champion))) + "\n"
    assert labels_pattern(line_labels(sample)).fullmatch(printed), (line_labels(sample), printed.splitlines())
