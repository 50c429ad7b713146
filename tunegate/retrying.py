"""Retry rules for I/O tasks: transient failures back off and retry, the user's mistakes do not."""

from __future__ import annotations

from prefect import Task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from tunegate.errors import InputError

# 2 s, 5 s, 15 s: rides out a flaky network mount or object store without stalling a run for minutes.
RETRY_DELAYS_SECONDS = [2, 5, 15]


def retry_unless_input_error(task: Task, task_run: TaskRun, state: State) -> bool:
    """Retry any failure except an InputError: a missing file stays missing however often we look."""
    try:
        state.result()
    except InputError:
        return False
    except Exception:
        return True
    return True
