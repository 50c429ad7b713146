"""What every benchmark shares: the machine's description, timing in fresh processes, and result files.

Each benchmark writes `bench/results/<name>.json` (machine + rows + targets) and `bench/results/<name>.md`
(the table `bench/README.md` quotes). Speed is reported, never asserted: a missed target is a row that
says so.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, torch threads and library versions: what the numbers were measured on."""
    import torch

    cpu = next(
        (line.split(":", 1)[1].strip() for line in read_lines("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor() or "unknown",
    )
    memory_kb = next((int(line.split()[1]) for line in read_lines("/proc/meminfo") if line.startswith("MemTotal")), 0)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 2**20, 1),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def run_timed(command: list[str]) -> tuple[float, str]:
    """Run a command in a fresh process from the repository root; (wall seconds, stdout). Fails loudly."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def write_results(name: str, rows: list[dict[str, Any]], targets: list[dict[str, Any]], notes: str = "") -> Path:
    """Write the JSON record and the Markdown table; return the JSON path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": name, "machine": machine(), "rows": rows, "targets": targets, "notes": notes}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    (RESULTS / f"{name}.md").write_text(markdown(record), encoding="utf-8")
    return path


def markdown(record: dict[str, Any]) -> str:
    rows, targets = record["rows"], record["targets"]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = [f"### {record['benchmark']}", ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(column)) for column in columns) + " |" for row in rows]
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {t['target']} | {cell(t['measured'])} | {'yes' if t['met'] else '**no**'} |" for t in targets]
    if record["notes"]:
        lines += ["", record["notes"]]
    return "\n".join(lines) + "\n"


def cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return "" if value is None else str(value)


def target(description: str, measured: Any, met: bool) -> dict[str, Any]:
    return {"target": description, "measured": measured, "met": bool(met)}
