from prefect.states import Failed

from tasks.ingest import fingerprint_sources, ingest_sources
from tunegate.core.errors import InputError
from tunegate.runtime.retrying import RETRY_DELAYS_SECONDS, retry_unless_input_error


def test_transient_failures_retry_and_input_errors_do_not():
    assert retry_unless_input_error(None, None, Failed(data=OSError("connection reset"))) is True
    assert retry_unless_input_error(None, None, Failed(data=InputError("data.csv: file not found"))) is False


def test_io_tasks_retry_with_backoff():
    for io_task in (fingerprint_sources, ingest_sources):
        assert io_task.retries == 3
        assert io_task.retry_delay_seconds == RETRY_DELAYS_SECONDS == [2, 5, 15]
        assert io_task.retry_condition_fn is retry_unless_input_error
