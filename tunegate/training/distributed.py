"""Multi-process training: one training run as N processes under torchrun (`train.processes`), DDP over gloo on
CPU and NCCL on GPUs, as transformers' Trainer does it when launched that way.

The parent writes what to train (`DistributedRun`: the job by reference, its directory, where to log) as JSON in
the run's directory and starts `python -m torch.distributed.run --standalone --nproc_per_node=N -m
tunegate.training.distributed <spec>`. Every rank trains; only rank 0 logs to MLflow, saves the adapter (`save_trained`)
and writes `result.json`, which the parent reads back. Checkpoints are the Trainer's (rank 0 writes them, every
rank resumes from the last intact one), so a refit killed mid-run resumes as a one-process run does.

    python -m tunegate.training.distributed <out_dir>/distributed.json   (under torchrun only)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel, Field

from tunegate.core.errors import InputError
from tunegate.core.refs import write_text_atomic
from tunegate.runtime.tracking import log_metrics
from tunegate.training.job import TrainingJob
from tunegate.training.results import TrainResult

SPEC_FILE, RESULT_FILE, LOG_FILE = "distributed.json", "result.json", "distributed.log"


class DistributedRun(BaseModel):
    """One training run for torchrun's processes to share."""

    job: TrainingJob = Field(description="What to train: rows by reference, model, recipe, plan, home.")
    out_dir: str
    train_on_val_too: bool = False
    mlflow_uri: str | None = Field(default=None, description="Where rank 0 logs metrics (None: nowhere).")
    mlflow_run_id: str | None = None


def train_in_processes(
    job: TrainingJob, out_dir: Path, tracking: tuple[str, str] | None, train_on_val_too: bool
) -> TrainResult:
    """Train `job` as `job.recipe.processes` processes (torchrun, DDP); rank 0 logs to `tracking` (uri, run id)
    and saves. The hooks of `TrainingJob.run` cannot cross into other processes: metrics go to MLflow directly."""
    import torch

    if job.recipe.sharding == "fsdp" and not torch.cuda.is_available():
        raise InputError(
            "train.sharding=fsdp needs CUDA GPUs; on CPU transformers trains the processes as DDP "
            "(use train.sharding: ddp)"
        )
    uri, run_id = tracking or (None, None)
    spec = DistributedRun(
        job=job,
        out_dir=str(out_dir),
        train_on_val_too=train_on_val_too,
        mlflow_uri=uri,
        mlflow_run_id=run_id,
    )
    return run_in_processes(spec, job.recipe.processes)


def run_in_processes(spec: DistributedRun, processes: int) -> TrainResult:
    """Train `spec` as `processes` processes on this machine and return rank 0's result; a failed launch names
    its log."""
    out_dir = Path(spec.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / SPEC_FILE, spec.model_dump_json(indent=2))
    (out_dir / RESULT_FILE).unlink(missing_ok=True)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command += ["-m", "tunegate.training.distributed", str(out_dir / SPEC_FILE)]
    # CPU: the cores split between the ranks (torch would give each all of them: N x oversubscribed).
    threads = max(1, (os.cpu_count() or 1) // processes)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": os.pathsep.join(sys.path)}
    with open(out_dir / LOG_FILE, "ab") as log:
        completed = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    if completed.returncode != 0 or not (out_dir / RESULT_FILE).exists():
        raise RuntimeError(
            f"{processes}-process training failed (exit {completed.returncode}); see {out_dir / LOG_FILE}"
        )
    return TrainResult.model_validate_json((out_dir / RESULT_FILE).read_text(encoding="utf-8"))


def main(spec_path: str) -> None:
    """One rank: train, and on rank 0 log and write the result."""
    spec = DistributedRun.model_validate_json(Path(spec_path).read_text(encoding="utf-8"))
    lead = int(os.environ.get("RANK", "0")) == 0
    on_evaluate, callbacks = None, []
    if lead and spec.mlflow_uri and spec.mlflow_run_id:
        from tunegate.runtime.tracking import mlflow_client
        from tunegate.training.callbacks import MlflowMetrics

        client, run_id = mlflow_client(spec.mlflow_uri), spec.mlflow_run_id
        callbacks = [MlflowMetrics(client, run_id)]

        def on_evaluate(step: int, metrics: dict[str, float]) -> None:
            log_metrics(client, run_id, metrics, step)

    out_dir = Path(spec.out_dir)
    # Each rank trains the job in-process (`run`, not `train_in_processes`: torchrun already started the ranks).
    result = spec.job.run(out_dir, on_evaluate, callbacks, train_on_val_too=spec.train_on_val_too)
    if lead:
        write_text_atomic(out_dir / RESULT_FILE, result.model_dump_json(indent=2))


if __name__ == "__main__":
    main(sys.argv[1])
