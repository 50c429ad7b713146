"""The flow's task runner, chosen by config: threads or processes here, Dask or Ray on a cluster."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from prefect import Flow
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from tunegate.config.pipeline import PipelineConfig
from tunegate.config.sweep import SweepConfig
from tunegate.core.errors import InputError


def task_runner_for(sweep: SweepConfig) -> Any:
    """A runner with `parallel_trials` workers: threads or processes here, a Dask cluster (an existing one at
    `dask_address`, else a local one of worker processes), or Ray (the `ray` extra)."""
    if sweep.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=sweep.parallel_trials)
    if sweep.task_runner == "processes":
        return ProcessPoolTaskRunner(max_workers=sweep.parallel_trials)
    if sweep.task_runner == "dask":
        return dask_task_runner(sweep)
    try:
        from prefect_ray import RayTaskRunner
    except ImportError as exc:
        raise InputError(
            "sweep.task_runner=ray: Ray is optional; install it with `pip install -e '.[ray]'` (prefect-ray)"
        ) from exc
    # A local Ray of parallel_trials CPUs, no dashboard (it would bind a port); RAY_ADDRESS joins an existing cluster.
    init = {} if os.environ.get("RAY_ADDRESS") else {"num_cpus": sweep.parallel_trials, "include_dashboard": False}
    return RayTaskRunner(init_kwargs=init)


def dask_task_runner(sweep: SweepConfig) -> Any:
    from prefect_dask import DaskTaskRunner

    if sweep.dask_address:
        return DaskTaskRunner(address=sweep.dask_address)
    # One single-threaded worker process per trial slot: a trial is one training run, and two in one process would
    # share its torch threads and its memory; no dashboard (it would bind a port).
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": sweep.parallel_trials,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
        }
    )


def flow_with_task_runner(pipeline_flow: Flow) -> Callable[..., Any]:
    """Call the flow with the task runner its config asks for (other flow parameters pass through)."""

    def run(config: PipelineConfig, **parameters: Any) -> Any:
        return pipeline_flow.with_options(task_runner=task_runner_for(config.sweep))(config, **parameters)

    return run


def name_this_flow_run(name: str) -> None:
    """Rename the current flow run (the UI's runs list shows why a scheduled run did what it did)."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run_id=flow_run.id, name=name)
