"""What every config section shares: strict models (an unknown key is an error) and the checks of URLs, database
URLs and model names that more than one section's fields use."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from tunegate.core.secrets import redact


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


# Optuna RDB backends SQLAlchemy can open, and MLflow tracking URI schemes (files, databases, servers).
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "oracle", "mssql")


TRACKING_SCHEMES = ("file", "http", "https", "databricks", *DATABASE_SCHEMES)


def checked_storage_url(value: str) -> str:
    """`journal:<path>` or a database URL SQLAlchemy parses (sqlite:///..., postgresql://user@host/db)."""
    if value.startswith("journal:"):
        if not value.removeprefix("journal:").strip():
            raise ValueError("journal: needs a file path, e.g. journal:/data/optuna.log")
        return value
    check_database_url(value)
    return value


def check_database_url(value: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value)
    except (ArgumentError, ValueError) as exc:
        raise ValueError(f"not a database URL ({redact(value)}); expected e.g. sqlite:///optuna.db") from exc
    if url.get_backend_name() not in DATABASE_SCHEMES:
        raise ValueError(f"unsupported database {url.get_backend_name()!r}; expected one of {DATABASE_SCHEMES}")


def checked_tracking_uri(value: str) -> str:
    """A local path, file:, http(s)://host, databricks, or a database URL MLflow can store runs in."""
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    scheme = parts.scheme.split("+")[0]
    if not parts.scheme or (len(parts.scheme) == 1 and value[1:3] in (":\\", ":/")):  # a path (or C:\ path)
        return value
    if scheme not in TRACKING_SCHEMES:
        raise ValueError(f"unsupported scheme {parts.scheme!r} in {redact(value)}; expected one of {TRACKING_SCHEMES}")
    if scheme in ("http", "https") and not parts.hostname:
        raise ValueError(f"{redact(value)} has no host")
    if scheme in DATABASE_SCHEMES:
        check_database_url(value)
    return value


def checked_model_name(value: str) -> str:
    """MLflow's own rule for registered model names (it rejects empty names, '/' and ':')."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_model_name

    try:
        _validate_model_name(value)
    except MlflowException as exc:
        raise ValueError(exc.message) from exc
    return value
