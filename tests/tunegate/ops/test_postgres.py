"""The PostgreSQL cluster `make serve DB=postgres` runs: a real initdb and server on 127.0.0.1, password auth for every
connection, the three databases, and a restart that keeps its data and password."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import psutil
import psycopg
import pytest

from tunegate.core.errors import InputError
from tunegate.ops.postgres import DATABASES, PASSWORD_ENV, PostgresCluster, run
from tunegate.ops.processes import free_port

# make test-fast leaves it out: initdb and a server process (~5 s)
pytestmark = pytest.mark.slow


@pytest.fixture
def reachable_directory():
    """A directory the `postgres` user can enter (pytest's own tmp is 0700 and owned by root)."""
    directory = Path(tempfile.mkdtemp(prefix="tunegate-pg-test-"))
    directory.chmod(0o755)
    yield directory / "postgres"
    shutil.rmtree(directory, ignore_errors=True)


def test_a_cluster_takes_its_password_on_127_0_0_1_has_the_databases_and_restarts_with_its_data(
    reachable_directory, monkeypatch
):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    cluster = PostgresCluster(reachable_directory, free_port())
    try:
        pid = cluster.start()
        password = cluster.password()
        assert (reachable_directory / "password").stat().st_mode & 0o777 == 0o600
        assert cluster.url("optuna") == f"postgresql://tunegate@127.0.0.1:{cluster.port}/optuna"  # no password in it
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(cluster.url("optuna"), password="wrong")
        with psycopg.connect(cluster.url("postgres"), password=password) as connection:
            names = {row[0] for row in connection.execute("SELECT datname FROM pg_database")}
            listen = connection.execute("SHOW listen_addresses").fetchone()[0]
        assert set(DATABASES) <= names and listen == "127.0.0.1"
        cluster.stop()
        assert not (cluster.data / "postmaster.pid").exists()
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

        # Started again: the same data directory and password, no second initdb, the databases still there.
        cluster.start()
        assert cluster.password() == password
        with psycopg.connect(cluster.url("mlflow"), password=password) as connection:
            assert connection.execute("SELECT current_database()").fetchone()[0] == "mlflow"
    finally:
        cluster.stop()


def test_the_password_comes_from_the_environment_when_set(tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "from-the-env")
    cluster = PostgresCluster(tmp_path / "postgres", free_port())
    assert (cluster.password(), cluster.client_env()) == ("from-the-env", {"PGPASSWORD": "from-the-env"})
    assert not (tmp_path / "postgres" / "password").exists()  # nothing written to disk


@pytest.mark.skipif(os.geteuid() != 0, reason="as root the server runs as the postgres user, who must reach the dir")
def test_a_directory_the_postgres_user_cannot_reach_is_one_line_naming_it(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    unreachable = tmp_path / "postgres"  # under pytest's 0700 tmp directory
    with pytest.raises(InputError) as raised:
        PostgresCluster(unreachable, free_port()).initialize()
    assert str(raised.value) == (
        f"{unreachable}: the postgres user cannot reach it (a parent directory is not searchable by others); use a "
        "state directory it can reach, or `chmod o+x` the parents"
    )


def test_a_failing_tool_is_named_with_its_exit_code_and_last_line(reachable_directory):
    from tunegate.ops.postgres import postgres_binary

    missing = reachable_directory.parent / "missing"
    with pytest.raises(RuntimeError) as raised:
        run([postgres_binary("pg_ctl"), "-D", str(missing), "status"], reachable_directory / "no.log")
    assert str(raised.value) == f'pg_ctl failed (exit 4): pg_ctl: directory "{missing}" does not exist'
