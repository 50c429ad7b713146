"""Helpers of the fault-injection suite: a tiny pipeline config and the real CLI in its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import DEMO_DATA, REPO

# A whole DAG in ~1 minute on 2 cores: two trials of 6 steps, 24 test rows.
TINY = [
    "sweep.n_trials=2",
    "sweep.rungs=1",
    "sweep.objective_rows=16",
    "train.max_steps=6",
    "train.batch_size=4",  # 4 rows a step, not the demo_tiny 16: a trial of 6 steps in ~7 s, not ~13 s
    "train.save_steps=2",
    "train.max_eval_rows=32",
    "train.health.min_loss_drop=0.0",
    "eval.max_rows=24",
    "eval.retention.rows=16",
    "registry.min_gain_over_base=-1.0",
]


def demo_overrides(home: Path, *extra: str) -> list[str]:
    return [
        f"home={home}",
        f"data.sources.0.path={DEMO_DATA / 'tickets.csv'}",
        f"data.sources.1.path={DEMO_DATA / 'replies.jsonl'}",
        *extra,
    ]


def cli_command(flow: str, home: Path, *overrides: str, summary: Path | None = None) -> list[str]:
    command = [sys.executable, "-m", f"flows.{flow}", "--config", str(REPO / "deployments" / "demo_tiny.yaml")]
    for override in demo_overrides(home, *overrides):
        command += ["--set", override]
    return command + (["--summary-out", str(summary)] if summary else [])


def cli_environment(prefect_home: Path, session_server: bool = False) -> dict[str, str]:
    """The CLI's own Prefect home and temporary Prefect server, or the test session's server (saves its ~10 s
    start-up where the server is not what a test is about)."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    if session_server:
        from prefect.settings import PREFECT_API_URL

        environment["PREFECT_API_URL"] = PREFECT_API_URL.value()
    return {**environment, "PREFECT_HOME": str(prefect_home), "HF_HUB_OFFLINE": "1"}


def run_cli(
    flow: str, home: Path, prefect_home: Path, *overrides: str, timeout: int = 600, session_server: bool = False
) -> tuple[int, str, dict]:
    """Run `python -m flows.<flow>` to the end; (exit code, stderr, summary)."""
    summary = home.parent / f"{home.name}-summary.json"
    finished = subprocess.run(
        cli_command(flow, home, *overrides, summary=summary),
        cwd=REPO,
        env=cli_environment(prefect_home, session_server),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return finished.returncode, finished.stderr, json.loads(summary.read_text()) if summary.exists() else {}
