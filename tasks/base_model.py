"""Base model: what `model.base` names, as a directory every stage can load.

- A catalogue name (`smollm2-135m-instruct`, see `tunegate base list`): the checkpoint `tunegate base get` wrote in
  the bases cache (a run never downloads; it fails in one line naming that command when the base is not fetched).
- A `.gguf` file: converted once into `home/bases/gguf-<stem>-<sha256>/`, verified against the GGUF load.
- A registered version (DPO after SFT: `model.base: models:/<name>@champion`): see below.
- Anything else (a local directory, a Hub id) is used as it is.

The version the alias names now is resolved once per run and its weights written whole (an adapter merged into
its own base with `merge_and_unload`) as safetensors, with its tokenizer and prompt format, under
`home/bases/<name>-v<version>-<fingerprint>/`. Every stage then reads that directory as its base, so their cache
keys follow the version: moving the alias retrains, a rerun on the same version reuses. A directory made before is
reused only while its contents still match the fingerprint recorded beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from tunegate.config.train import ModelConfig
from tunegate.core.errors import InputError, one_line
from tunegate.core.refs import AdapterRef, directory_problems, write_text_atomic
from tunegate.registry.exports import save_whole
from tunegate.runtime.retrying import retry_unless_input_error

REGISTERED_PREFIX = "models:/"
FINGERPRINT_SUFFIX = ".fingerprint"  # beside the directory: the sha256 of its files when they were written


@task(retries=1, retry_delay_seconds=5, retry_condition_fn=retry_unless_input_error)
def resolve_base_model(model: ModelConfig, tracking_uri: str, home: str) -> ModelConfig:
    """`model` unchanged for a path or Hub id; for `models:/<name>@<alias>` or `models:/<name>/<version>`, with
    `base` set to that version's whole weights under home/bases/ (written if missing or changed); for a catalogue
    name or a `.gguf` file, with `base` set to its converted checkpoint."""
    converted = converted_base(model.base, Path(home))
    if converted is not None:
        get_run_logger().info("model.base %s is the checkpoint %s", model.base, converted)
        return model.model_copy(update={"base": str(converted)})
    if not model.base.startswith(REGISTERED_PREFIX):
        return model
    from tunegate.runtime.tracking import mlflow_client

    version = registered_version(mlflow_client(tracking_uri), model.base)
    tags = version.tags or {}
    weights = tags.get("weights_fingerprint") or tags.get("adapter_fingerprint") or str(version.run_id)
    target = Path(home) / "bases" / f"{version.name}-v{version.version}-{weights[:12]}"
    recorded = target.with_name(target.name + FINGERPRINT_SUFFIX)
    if not recorded.is_file() or directory_problems(target, recorded.read_text(encoding="utf-8").strip()):
        write_whole_weights(model, f"{REGISTERED_PREFIX}{version.name}/{version.version}", tracking_uri, target)
        write_text_atomic(recorded, AdapterRef.of(target, "full").fingerprint + "\n")
    get_run_logger().info("model.base %s is version %s of %s: %s", model.base, version.version, version.name, target)
    return model.model_copy(update={"base": str(target)})


def converted_base(base: str, home: Path) -> Path | None:
    """The checkpoint directory of a catalogue base or a `.gguf` file; None for anything else."""
    from tunegate.lm.base_catalogue import catalogue_base
    from tunegate.lm.base_fetch import fetched_base
    from tunegate.lm.gguf_checkpoint import converted_gguf

    if catalogue_base(base) is not None and not Path(base).exists():
        return fetched_base(base)
    if base.lower().endswith(".gguf"):
        return converted_gguf(Path(base), home)
    return None


def registered_version(client: Any, uri: str) -> Any:
    """The model version `models:/<name>@<alias>` or `models:/<name>/<version>` names; a one-line InputError when the
    registry has none."""
    from mlflow.exceptions import MlflowException

    reference = uri.removeprefix(REGISTERED_PREFIX)
    name, alias = reference.split("@", 1) if "@" in reference else (reference, None)
    name, _, number = name.partition("/") if alias is None else (name, "", "")
    if not name or not (alias or number):
        raise InputError(f"model.base {uri!r}: expected models:/<name>@<alias> or models:/<name>/<version>")
    try:
        return client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, number)
    except MlflowException as exc:
        raise InputError(f"model.base {uri!r}: no such registered version ({one_line(exc)})") from exc


def write_whole_weights(model: ModelConfig, version_uri: str, tracking_uri: str, target: Path) -> None:
    """The registered version's weights as one plain model (its adapter merged), tokenizer and prompt format."""
    from tunegate.registry.serving import registered_build

    with registered_build(version_uri, model.trust_remote_code, tracking_uri) as build:
        if build.settings.get("quantization"):
            raise InputError(
                f"model.base {version_uri}: an int8 export cannot be trained on; start from its adapter or merged "
                "version"
            )
        whole = build.model.merge_and_unload() if hasattr(build.model, "merge_and_unload") else build.model
        save_whole(whole, build.tokenizer, build.prompt_format, target)
