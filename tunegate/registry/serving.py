"""The registered model: an MLflow pyfunc that loads base model + adapter and generates answers.

It carries the adapter (or whole weights: a full fine-tune, a merged export, an int8 export quantized when it is
loaded), the tokenizer and the prompt format as artifacts, this package as code (`code_paths`: it serves where the
project is not installed), and only a *reference* to the base model (an absolute local path or a Hub id) in its
model config, never a copy of the base weights. `predict` takes a DataFrame with a
`prompt` column (new text) or canonical rows (`shape`, `prompt`, `completion`, `messages`) and returns one
generation per row:

    model = mlflow.pyfunc.load_model("models:/support-demo@champion")
    model.predict(pd.DataFrame({"prompt": ["My parcel never arrived."]}))   # -> ['shipping']
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

ADAPTER_ARTIFACT = "adapter"
# The whole `tunegate` package (the folder above this subpackage): a registered model carries it (MLflow `code_paths`),
# so it is served where the project is not installed.
PACKAGE_DIR = Path(__file__).resolve().parents[1]
GENERATION_DEFAULTS = {"max_new_tokens": 64, "batch_size": 16}


class AdapterGenerator(mlflow.pyfunc.PythonModel):
    """Base model (by reference) + trained adapter, greedy generation with the training prompt format."""

    def load_context(self, context: Any) -> None:
        from transformers import AutoTokenizer

        from tunegate.lm.prompting import PromptFormat
        from tunegate.registry.exports import load_build

        adapter_dir = Path(context.artifacts[ADAPTER_ARTIFACT])
        settings = context.model_config
        self.tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
        self.prompt_format = PromptFormat.load(adapter_dir)
        self.max_new_tokens = int(settings.get("max_new_tokens", GENERATION_DEFAULTS["max_new_tokens"]))
        self.model = load_build(
            adapter_dir,
            settings["base_model"],
            bool(settings.get("trust_remote_code", False)),
            settings.get("quantization"),
        )
        self.model.eval()

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> list[str]:

        settings = {**GENERATION_DEFAULTS, "max_new_tokens": self.max_new_tokens, **(params or {})}
        return answers(
            self.model,
            self.tokenizer,
            self.prompt_format,
            model_input,
            int(settings["max_new_tokens"]),
            int(settings["batch_size"]),
        )


def answers(
    model: Any, tokenizer: Any, prompt_format: Any, rows: pd.DataFrame, max_new_tokens: int, batch_size: int
) -> list[str]:
    """Greedy answers to canonical rows (or bare `prompt` rows) in the model's training prompt format."""
    from tunegate.evaluation.scoring import generate

    records = rows.to_dict("records")
    if records and "shape" in records[0]:
        prompts = [prompt_format.format_row(row).prompt for row in records]
    else:
        prompts = [prompt_format.format_prompt(str(row["prompt"])) for row in records]
    generations = generate(model, tokenizer, prompts, max_new_tokens, batch_size)
    # A byte-level BPE with a prefix space decodes " shipping"; callers want the answer itself.
    return [text.strip() for text in generations]


def registered_model_answers(
    model_uri: str, rows: pd.DataFrame, trust_remote_code: bool, tracking_uri: str | None = None
) -> list[str]:
    """Greedy answers of a registered version to `rows` (`registered_build`)."""
    with registered_build(model_uri, trust_remote_code, tracking_uri) as build:
        max_new_tokens = int(build.settings.get("max_new_tokens", GENERATION_DEFAULTS["max_new_tokens"]))
        return answers(
            build.model, build.tokenizer, build.prompt_format, rows, max_new_tokens, GENERATION_DEFAULTS["batch_size"]
        )


@dataclass(frozen=True)
class RegisteredBuild:
    """A registered version loaded from its files: the model, its tokenizer and prompt format, its pyfunc config."""

    model: Any
    tokenizer: Any
    prompt_format: Any
    settings: dict[str, Any]


@contextmanager
def registered_build(
    model_uri: str, trust_remote_code: bool, tracking_uri: str | None = None
) -> Iterator[RegisteredBuild]:
    """A registered version from its files alone: the adapter's (or whole) safetensors weights, tokenizer and
    prompt format, and the base named in its MLmodel file (read as YAML). Its pickled pyfunc object is never
    loaded, so a tampered registry entry cannot run code here; `trust_remote_code` is the caller's, not the
    entry's. The downloaded files are removed when the block ends."""
    import tempfile

    import mlflow.artifacts
    import yaml
    from transformers import AutoTokenizer

    from tunegate.lm.prompting import PromptFormat
    from tunegate.registry.exports import load_build
    from tunegate.runtime.tracking import fluent_tracking

    with tempfile.TemporaryDirectory() as folder:
        with fluent_tracking(tracking_uri or mlflow.get_tracking_uri()):
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=folder))
        description = yaml.safe_load((local / "MLmodel").read_text(encoding="utf-8"))
        settings = description["flavors"]["python_function"].get("config") or {}  # the pyfunc's model_config
        # MLflow copies an artifact directory under its own name (artifacts/merged-<key> for a merged export).
        adapter_dir = local / description["flavors"]["python_function"]["artifacts"][ADAPTER_ARTIFACT]["path"]
        model = load_build(adapter_dir, str(settings["base_model"]), trust_remote_code, settings.get("quantization"))
        model.eval()
        yield RegisteredBuild(
            model=model,
            tokenizer=AutoTokenizer.from_pretrained(adapter_dir),
            prompt_format=PromptFormat.load(adapter_dir),
            settings=settings,
        )


def base_model_reference(base: str) -> str:
    """An absolute path for a local base model (found from any working directory), else the Hub id."""
    local = Path(base).expanduser()
    return str(local.resolve()) if local.exists() else base
