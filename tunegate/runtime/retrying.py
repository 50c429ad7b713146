"""Retry rules for I/O tasks: transient failures back off and retry, the user's mistakes do not."""

from __future__ import annotations

import errno

from prefect import Task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from tunegate.core.errors import InputError

# 2 s, 5 s, 15 s: rides out a flaky network mount or object store without stalling a run for minutes.
RETRY_DELAYS_SECONDS = [2, 5, 15]


# Failures a retry cannot fix: a full disk or quota, a file-size limit, a missing permission, a read-only file system.
PERMANENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS})


def retry_unless_input_error(task: Task, task_run: TaskRun, state: State) -> bool:
    """Retry any failure except an InputError or a permanent OS error: a missing file stays missing however
    often we look, and a full disk stays full."""
    try:
        state.result()
    except InputError:
        return False
    except OSError as exc:
        return exc.errno not in PERMANENT_ERRNOS
    except Exception:
        return True
    return True
