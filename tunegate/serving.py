"""The registered model: an MLflow pyfunc that loads base model + adapter and generates answers.

It carries the adapter (or full weights), the tokenizer and the prompt format as artifacts, and only a
*reference* to the base model (an absolute local path or a Hub id) in its model config, never a copy of
the base weights. `predict` takes a DataFrame with a `prompt` column (new text) or canonical rows
(`shape`, `prompt`, `completion`, `messages`) and returns one generation per row:

    model = mlflow.pyfunc.load_model("models:/support-demo@champion")
    model.predict(pd.DataFrame({"prompt": ["My parcel never arrived."]}))   # -> ['shipping']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

ADAPTER_ARTIFACT = "adapter"
GENERATION_DEFAULTS = {"max_new_tokens": 64, "batch_size": 16}


class AdapterGenerator(mlflow.pyfunc.PythonModel):
    """Base model (by reference) + trained adapter, greedy generation with the training prompt format."""

    def load_context(self, context: Any) -> None:
        from transformers import AutoTokenizer

        from tunegate.model_loading import load_trained_model
        from tunegate.prompting import PromptFormat

        adapter_dir = Path(context.artifacts[ADAPTER_ARTIFACT])
        settings = context.model_config
        self.tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
        self.prompt_format = PromptFormat.load(adapter_dir)
        self.max_new_tokens = int(settings.get("max_new_tokens", GENERATION_DEFAULTS["max_new_tokens"]))
        self.model = load_trained_model(
            adapter_dir, settings["base_model"], bool(settings.get("trust_remote_code", False))
        )
        self.model.eval()

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> list[str]:
        from tasks.evaluate import generate

        rows = model_input.to_dict("records")
        if rows and "shape" in rows[0]:
            prompts = [self.prompt_format.format_row(row).prompt for row in rows]
        else:
            prompts = [self.prompt_format.format_prompt(str(row["prompt"])) for row in rows]
        settings = {**GENERATION_DEFAULTS, "max_new_tokens": self.max_new_tokens, **(params or {})}
        generations = generate(
            self.model, self.tokenizer, prompts, int(settings["max_new_tokens"]), int(settings["batch_size"])
        )
        # A byte-level BPE with a prefix space decodes " shipping"; callers want the answer itself.
        return [text.strip() for text in generations]


def base_model_reference(base: str) -> str:
    """An absolute path for a local base model (found from any working directory), else the Hub id."""
    local = Path(base).expanduser()
    return str(local.resolve()) if local.exists() else base
