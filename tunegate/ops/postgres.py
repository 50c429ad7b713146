"""A PostgreSQL cluster on 127.0.0.1 for shared state: the Optuna studies, the MLflow server's store and the
Prefect server's database. Debian's PostgreSQL binaries (`initdb`, `pg_ctl`) run it under a directory of ours
(`make serve DB=postgres`: `.tunegate/services/postgres/`); `make stop` ends it.

One role, `tunegate`, with a password from the environment (`TUNEGATE_PG_PASSWORD`; when unset, one is generated
once and kept in `<dir>/password`, mode 0600, never in a config file). Clients read it from `PGPASSWORD` (psycopg,
asyncpg and libpq all do), so the URLs in configs carry no password: `postgresql://tunegate@127.0.0.1:5433/optuna`.
Only TCP on 127.0.0.1 (no Unix socket), password auth (scram-sha-256) for every TCP connection.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tunegate.core.errors import InputError

HOST = "127.0.0.1"
ROLE = "tunegate"
DATABASES = ("optuna", "mlflow", "prefect")
PASSWORD_ENV = "TUNEGATE_PG_PASSWORD"
# initdb takes ~3 s on 2 cores, the first start ~1 s; 60 s covers a slow disk.
READY_TIMEOUT_SECONDS = 60.0
INSTALL_HINT = "install PostgreSQL (Debian: apt-get install postgresql) or put its bin directory on PATH"


def postgres_binary(name: str) -> str:
    """`initdb`/`pg_ctl`/`postgres` from PATH, else from Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[-3]))
    if not candidates:
        raise InputError(f"PostgreSQL's {name} not found: {INSTALL_HINT}")
    return candidates[-1]


def as_server_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` user Debian's package creates."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@dataclass
class PostgresCluster:
    """A cluster in `directory` (its data in `directory/data`) listening on 127.0.0.1:`port`."""

    directory: Path
    port: int

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def password(self) -> str:
        """The role's password: from the environment, else the one generated for this cluster."""
        if os.environ.get(PASSWORD_ENV):
            return os.environ[PASSWORD_ENV]
        stored = self.directory / "password"
        if not stored.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            stored.touch(mode=0o600)
            stored.write_text(secrets.token_urlsafe(24), encoding="utf-8")
        return stored.read_text(encoding="utf-8").strip()

    def url(self, database: str, driver: str = "postgresql") -> str:
        """A URL without the password (clients take it from PGPASSWORD)."""
        return f"{driver}://{ROLE}@{HOST}:{self.port}/{database}"

    def client_env(self) -> dict[str, str]:
        return {"PGPASSWORD": self.password()}

    def start(self) -> int:
        """initdb on first use, start the server, create the databases; returns the postmaster's pid."""
        if not (self.data / "PG_VERSION").exists():
            self.initialize()
        log = self.directory / "postgres.log"
        options = f"-c listen_addresses={HOST} -p {self.port} -c unix_socket_directories=''"
        run([postgres_binary("pg_ctl"), "-D", str(self.data), "-l", str(log), "-o", options, "-w", "start"], log)
        self.create_databases()
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def initialize(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(mode=0o700, exist_ok=True)
        password_file = self.directory / ".initdb-password"
        password_file.write_text(self.password(), encoding="utf-8")
        try:
            if os.geteuid() == 0:  # the server user writes its data, its log and reads the password once
                for path in (self.directory, self.data, password_file):
                    shutil.chown(path, "postgres", "postgres")
                if subprocess.run(as_server_user(["test", "-w", str(self.directory)])).returncode != 0:
                    raise InputError(
                        f"{self.directory}: the postgres user cannot reach it (a parent directory is not searchable "
                        "by others); use a state directory it can reach, or `chmod o+x` the parents"
                    )
            command = [postgres_binary("initdb"), "-D", str(self.data), "-U", ROLE, f"--pwfile={password_file}"]
            command += ["--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "--encoding=UTF8"]
            run(command, self.directory / "initdb.log")
        finally:
            password_file.unlink(missing_ok=True)

    def create_databases(self) -> None:
        import psycopg

        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            try:
                connection = psycopg.connect(self.url("postgres"), password=self.password(), autocommit=True)
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        with connection:
            existing = {row[0] for row in connection.execute("SELECT datname FROM pg_database")}
            for database in DATABASES:
                if database not in existing:
                    connection.execute(f'CREATE DATABASE "{database}"')

    def stop(self) -> None:
        """A fast shutdown (open sessions are ended, data is flushed)."""
        if (self.data / "postmaster.pid").exists():
            run([postgres_binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"], None)


def run(command: list[str], log: Path | None) -> None:
    """Run a PostgreSQL tool as the server user; a failure names the tool and where its output went."""
    completed = subprocess.run(as_server_user(command), capture_output=True, text=True)
    if completed.returncode != 0:
        where = f"; see {log}" if log is not None and log.exists() else ""
        detail = (completed.stderr or completed.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{Path(command[0]).name} failed (exit {completed.returncode}): {detail[0]}{where}")
