"""Loading the configuration: YAML with one-line errors, `--set section.key=value` overrides, the refusal of
passwords written into the file, and passwords given on the command line moved into the environment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import yaml
from pydantic import ValidationError

from tunegate.config.pipeline import PipelineConfig
from tunegate.core.errors import InputError
from tunegate.core.secrets import SECRET_PARAMETER, redact


def parse_override(assignment: str) -> tuple[list[str], Any]:
    """Split `a.b.c=value` into its key path and a YAML-parsed value (`0.9` → float, `[a, b]` → list)."""
    if "=" not in assignment:
        raise InputError(f"--set {assignment!r}: expected key.path=value")
    dotted, raw_value = assignment.split("=", 1)
    return dotted.strip().split("."), yaml.safe_load(raw_value) if raw_value.strip() else ""


def apply_override(document: dict[str, Any], keys: list[str], value: Any) -> None:
    """Set `document[k1][k2]...[kn] = value`; list items are addressed by index (`data.sources.0.path`)."""
    node: Any = document
    for depth, key in enumerate(keys[:-1]):
        node = _child(node, key, keys[: depth + 1])
    last = keys[-1]
    if isinstance(node, list):
        node[_list_index(node, last, keys)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise InputError(f"--set {'.'.join(keys)}: {'.'.join(keys[:-1])} is a value ({node!r}), not a section")


def _child(node: Any, key: str, path: list[str]) -> Any:
    if isinstance(node, list):
        return node[_list_index(node, key, path)]
    if not isinstance(node, dict):
        raise InputError(f"--set {'.'.join(path)}: {'.'.join(path[:-1])} is not a section")
    return node.setdefault(key, {})


def _list_index(node: list, key: str, path: list[str]) -> int:
    if not key.isdigit() or int(key) >= len(node):
        raise InputError(f"--set {'.'.join(path)}: expected an index below {len(node)}, got {key!r}")
    return int(key)


def load_config(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Read a YAML config, apply `key.path=value` overrides, validate; user errors become one-line InputErrors."""
    config_path = Path(path)
    if not config_path.is_file():
        raise InputError(f"{config_path}: config file not found")
    try:
        document = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        line = config_path.read_bytes()[: exc.start].count(b"\n") + 1
        raise InputError(f"{config_path} line {line}: not UTF-8 (byte {exc.object[exc.start]:#04x})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise InputError(f"{config_path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    if not isinstance(document, dict):
        raise InputError(f"{config_path}: expected a mapping at the top level")
    check_no_passwords(document, config_path)
    for assignment in overrides or []:
        apply_override(document, *parse_override(assignment))
    return validate_config(document, str(config_path))


# URL fields whose password has a place in the environment instead of a config file (files are committed, and
# Prefect stores a deployment's parameters).
URL_FIELDS = {("sweep", "storage"): "PGPASSWORD", ("registry", "tracking_uri"): "MLFLOW_TRACKING_PASSWORD"}


def check_no_passwords(document: dict[str, Any], config_path: Path) -> None:
    """A config file never holds a password: the URLs in it name the user, the environment holds the secret."""
    for (section, field), variable in URL_FIELDS.items():
        value = (document.get(section) or {}).get(field) if isinstance(document.get(section), dict) else None
        if isinstance(value, str) and "://" in value and (urlsplit(value).password or redact(value) != value):
            raise InputError(
                f"{config_path}: {section}.{field} holds a password ({redact(value)}); keep secrets out of config "
                f"files: drop it from the URL and set {variable} in the environment"
            )


def validate_config(document: dict[str, Any], origin: str) -> PipelineConfig:
    """Validate a config mapping; the first problem becomes a one-line error naming the field."""
    try:
        return PipelineConfig.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        section_rule = first["type"] == "value_error" and isinstance(first.get("input"), dict)
        if not first["loc"] or section_rule:  # a section's own rule names its fields itself
            raise InputError(redact(f"{origin}: {message}")) from exc
        field = ".".join(str(part) for part in first["loc"])
        got = repr(first.get("input"))
        raise InputError(
            redact(f"{origin}: field {field}: {message} (got {got if len(got) <= 80 else got[:77] + '...'})")
        ) from exc


def password_variables(url: str) -> tuple[str, str | None]:
    """(the variable its client reads the password from, the one it reads the user from where the user must move
    too) for a URL's scheme: libpq, psycopg and asyncpg read PGPASSWORD; MLflow's REST client sends
    MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD as basic auth."""
    scheme = urlsplit(url).scheme.split("+")[0].lower()
    if scheme in ("postgresql", "postgres"):
        return "PGPASSWORD", None
    if scheme in ("http", "https"):
        return "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_USERNAME"
    raise InputError(f"a {scheme} URL takes no password here ({redact(url)}): drop it from the URL")


def without_password(url: str) -> tuple[str, str | None, str | None]:
    """(the URL without its password, the password, the user) from the user info or a query parameter named
    like a secret (`?password=`)."""
    parts = urlsplit(url)
    password, user = parts.password, parts.username
    query = parse_qsl(parts.query, keep_blank_values=True)
    secret = [value for name, value in query if SECRET_PARAMETER.search(f"?{name}={value}")]
    password = password or (secret[0] if secret else None)
    if password is None:
        return url, None, None
    kept_query = urlencode([(name, value) for name, value in query if not SECRET_PARAMETER.search(f"?{name}={value}")])
    host = parts.netloc.rsplit("@", 1)[-1]
    _, user_variable = password_variables(url)
    netloc = host if user_variable or not user else f"{user}@{host}"
    return urlunsplit(parts._replace(netloc=netloc, query=kept_query)), password, user


def passwords_moved_to_environment(config: PipelineConfig) -> PipelineConfig:
    """The config with every password a URL field got from `--set` moved into the variable its client reads
    (PGPASSWORD, MLFLOW_TRACKING_PASSWORD and _USERNAME), in this process's environment and so its children's:
    the config is a flow parameter, which Prefect stores, and its URLs reach the summary, MLflow and the stage
    results. One-line error for a scheme with no such variable, or two URLs wanting one variable for two
    different passwords."""
    moved: dict[str, tuple[str, str]] = {}
    updates: dict[str, dict[str, str]] = {}
    for (section, field), _ in URL_FIELDS.items():
        url = getattr(getattr(config, section), field)
        if not isinstance(url, str) or "://" not in url:
            continue
        stripped, password, user = without_password(url)
        if password is None:
            continue
        password_variable, user_variable = password_variables(url)
        for variable, value in ((password_variable, password), (user_variable, user)):
            if variable is None or value is None:
                continue
            if variable in moved and moved[variable][1] != value:
                raise InputError(
                    f"{section}.{field} and {moved[variable][0]} both need {variable}, with different values: "
                    f"set {variable} in the environment and drop the passwords from the URLs"
                )
            moved[variable] = (f"{section}.{field}", value)
        updates.setdefault(section, {})[field] = stripped
    for variable, (_, value) in moved.items():
        os.environ[variable] = value
    return config.model_copy(
        update={section: getattr(config, section).model_copy(update=fields) for section, fields in updates.items()}
    )
