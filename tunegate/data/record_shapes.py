"""The record shapes ingest accepts, in one table: how each is detected, which fields it requires, and how its
fields map onto the canonical (prompt, completion, messages, rejected) row: a preference pair keeps its chosen reply
as the completion (what SFT would train on) and its rejected reply beside it.

Detection goes down the table in order and the first shape whose `detected_by` fields are all present wins, so a
record with `chosen` is a preference pair whatever else it has, and one with both `messages` and `prompt` is chat.
A chat-shaped pair carries the conversation in `messages` (ending with the user's turn) and its two replies in
`chosen` and `rejected`, each a string or an assistant message (TRL's conversational form: a one-message list).
A user's other field names map onto these with a source's `columns:`; `shape:` in the config skips detection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RecordShape:
    """One accepted shape of a training record."""

    name: str
    detected_by: tuple[str, ...]  # all present → this shape (first match down RECORD_SHAPES)
    required: tuple[str, ...]  # a CSV header without one of these is a file-level error
    prompt_from: tuple[str, ...]  # joined with a blank line when every one is non-empty, else the first
    completion_from: str | None  # None: chat (the last turn, when it is the assistant's)
    hint: str  # how the error messages spell it
    rejected_from: str | None = None  # preference pairs: the rejected reply


RECORD_SHAPES: tuple[RecordShape, ...] = (
    RecordShape(
        "preference",
        ("chosen",),  # a pair missing its rejected reply is still a pair: quarantined as rejected_present
        ("prompt", "chosen", "rejected"),  # a CSV's; a JSONL pair may carry `messages` instead of `prompt`
        ("prompt",),
        "chosen",
        "prompt+chosen+rejected",
        rejected_from="rejected",
    ),
    RecordShape("chat", ("messages",), ("messages",), (), None, "messages"),
    RecordShape(
        "alpaca", ("instruction",), ("instruction", "output"), ("instruction", "input"), "output", "instruction+output"
    ),
    RecordShape(
        "prompt_completion", ("prompt",), ("prompt", "completion"), ("prompt",), "completion", "prompt+completion"
    ),
    RecordShape("text", ("text",), ("text",), (), "text", "text"),
)
SHAPES = {shape.name: shape for shape in RECORD_SHAPES}
KNOWN_SHAPES_HINT = " | ".join(shape.hint for shape in RECORD_SHAPES)
# Fields that must be strings when present (checked record by record).
TEXT_FIELDS = tuple(
    dict.fromkeys(f for s in RECORD_SHAPES for f in (*s.prompt_from, s.completion_from, s.rejected_from) if f)
)


def reply_text(value: Any) -> Any:
    """A preference reply as text: a string as it is, an assistant message (or a list of exactly one) as its
    content; anything else unchanged, for the string check to report."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, dict) and value.get("role") == "assistant" and isinstance(value.get("content"), str):
        return value["content"]
    return value


def detect_shape(field_names: Any) -> str | None:
    """The first shape whose detecting fields are all among `field_names`, or None."""
    for shape in RECORD_SHAPES:
        if all(name in field_names for name in shape.detected_by):
            return shape.name
    return None


def joined_prompt(parts: list[Any]) -> Any:
    """An alpaca prompt: instruction and input separated by a blank line when both are non-empty, else the
    instruction; a shape without prompt fields has an empty prompt."""
    if not parts:
        return ""
    return "\n\n".join(parts) if len(parts) > 1 and all(parts) else parts[0]


def text_record_fields(shape: str, fields: dict[str, Any]) -> list[Any]:
    """[prompt, completion, messages, rejected] of a record of a text (non-chat) shape."""
    spec = SHAPES[shape]
    prompt = joined_prompt([fields.get(name) for name in spec.prompt_from])
    rejected = fields.get(spec.rejected_from) if spec.rejected_from else None
    return [prompt, fields.get(spec.completion_from), None, rejected]
