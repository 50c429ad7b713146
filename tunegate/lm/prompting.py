"""One prompt format for training, evaluation and the registered model's inference.

A canonical row becomes (prompt, target): the model sees `prompt` and learns to produce `target`.
With a tokenizer that has a chat template, the prompt is the template applied to the conversation up
to the final assistant turn, with the generation prompt; otherwise the documented plain template:

    ### Instruction:
    {prompt}

    ### Response:
    {target}<eos>

`text` rows have an empty prompt: all of their text is target.

`system_prompt` (model.system_prompt) is the system message of every conversation that has none, the same in
training, evaluation and serving: None leaves the template's own default (SmolLM2's injects a 17-token
"You are a helpful AI assistant named SmolLM..." into every row), "" an empty system turn. With the plain
template a non-empty system prompt is its first paragraph.

    >>> plain = PromptFormat(chat_template=None, eos_token="</s>")
    >>> plain.format_row({"shape": "prompt_completion", "prompt": "Where is my parcel?", "completion": "shipping"})
    PromptPair(prompt='### Instruction:\\nWhere is my parcel?\\n\\n### Response:\\n', target='shipping</s>')
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PLAIN_PROMPT_TEMPLATE = "### Instruction:\n{prompt}\n\n### Response:\n"
FORMAT_FILE = "prompt_format.json"


@dataclass(frozen=True)
class PromptPair:
    """What the model is shown and what it must produce (target includes the end-of-sequence token)."""

    prompt: str
    target: str


@dataclass(frozen=True)
class PromptFormat:
    """The chat template (or None for the plain template) and the end-of-sequence token; saved with models."""

    chat_template: str | None
    eos_token: str
    system_prompt: str | None = None

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, system_prompt: str | None = None) -> PromptFormat:
        return cls(
            chat_template=getattr(tokenizer, "chat_template", None) or None,
            eos_token=tokenizer.eos_token or "",
            system_prompt=system_prompt,
        )

    def format_row(self, row: dict[str, Any]) -> PromptPair:
        """Prompt and target of one canonical row (keys: shape, prompt, completion, optional messages)."""
        target = f"{row['completion']}{self.eos_token}"
        if row["shape"] == "text":
            return PromptPair(prompt="", target=target)
        if self.chat_template is None:
            system = f"{self.system_prompt}\n\n" if self.system_prompt else ""
            return PromptPair(prompt=system + PLAIN_PROMPT_TEMPLATE.format(prompt=row["prompt"]), target=target)
        return PromptPair(
            prompt=self.render_chat(self.with_system_prompt(conversation_before_answer(row))), target=target
        )

    def with_system_prompt(self, turns: list[dict[str, str]]) -> list[dict[str, str]]:
        """The configured system message first, unless there is none configured or the conversation has its own."""
        if self.system_prompt is None or (turns and turns[0]["role"] == "system"):
            return turns
        return [{"role": "system", "content": self.system_prompt}, *turns]

    def format_prompt(self, prompt: str) -> str:
        """The prompt for a bare user message (inference on new text)."""
        return self.format_row({"shape": "prompt_completion", "prompt": prompt, "completion": ""}).prompt

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """The chat template rendered by transformers' own sandboxed Jinja renderer, with the generation prompt."""
        from transformers.utils.chat_template_utils import render_jinja_template

        rendered, _ = render_jinja_template(
            conversations=[messages],
            chat_template=self.chat_template,
            add_generation_prompt=True,
            eos_token=self.eos_token,
        )
        return rendered[0]

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / FORMAT_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> PromptFormat:
        return cls(**json.loads((Path(directory) / FORMAT_FILE).read_text(encoding="utf-8")))


def conversation_before_answer(row: dict[str, Any]) -> list[dict[str, str]]:
    """The turns the model sees: a chat row's messages before the last, a chat-shaped preference pair's whole
    conversation (its replies come after it), or one user turn."""
    messages = row.get("messages")
    if row["shape"] in ("chat", "preference") and messages is not None:
        turns = [{"role": m["role"], "content": m["content"]} for m in list(messages)]
        return turns[:-1] if row["shape"] == "chat" else turns
    return [{"role": "user", "content": row["prompt"]}]
