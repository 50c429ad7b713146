"""The flow's task runner, chosen by config: threads or processes here, Dask or Ray on a cluster."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import Flow
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from tunegate.config import PipelineConfig, SweepConfig
from tunegate.errors import InputError


def task_runner_for(sweep: SweepConfig) -> Any:
    """A runner with `parallel_trials` workers; dask/ray need prefect-dask / prefect-ray installed."""
    if sweep.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=sweep.parallel_trials)
    if sweep.task_runner == "processes":
        return ProcessPoolTaskRunner(max_workers=sweep.parallel_trials)
    try:
        if sweep.task_runner == "dask":
            from prefect_dask import DaskTaskRunner

            return DaskTaskRunner(cluster_kwargs={"n_workers": sweep.parallel_trials})
        from prefect_ray import RayTaskRunner

        return RayTaskRunner()
    except ImportError as exc:
        raise InputError(
            f"sweep.task_runner={sweep.task_runner}: install prefect-{sweep.task_runner} to use it ({exc})"
        ) from exc


def flow_with_task_runner(pipeline_flow: Flow) -> Callable[..., Any]:
    """Call the flow with the task runner its config asks for (other flow parameters pass through)."""

    def run(config: PipelineConfig, **parameters: Any) -> Any:
        return pipeline_flow.with_options(task_runner=task_runner_for(config.sweep))(config, **parameters)

    return run
