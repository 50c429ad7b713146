"""The one table of record shapes: detection order, required fields, canonical mapping."""

from __future__ import annotations

from typing import get_args

from tunegate.config.data import RecordShape as ConfiguredShape
from tunegate.data.record_shapes import (
    KNOWN_SHAPES_HINT,
    RECORD_SHAPES,
    SHAPES,
    TEXT_FIELDS,
    detect_shape,
    reply_text,
    text_record_fields,
)


def test_detection_takes_the_first_shape_down_the_table():
    assert detect_shape({"messages": [], "prompt": "p"}) == "chat"
    assert detect_shape({"messages": [], "chosen": "c", "rejected": "r"}) == "preference"
    assert detect_shape({"instruction": "i", "prompt": "p"}) == "alpaca"
    assert detect_shape({"prompt": "p", "chosen": "c", "completion": "x"}) == "preference"
    assert detect_shape({"prompt": "p", "text": "t"}) == "prompt_completion"
    assert detect_shape({"text": "t"}) == "text"
    assert detect_shape({"question": "q", "answer": "a"}) is None


def test_the_config_accepts_exactly_the_shapes_in_the_table():
    assert set(get_args(ConfiguredShape)) == {"auto", *SHAPES}
    assert [shape.name for shape in RECORD_SHAPES] == ["preference", "chat", "alpaca", "prompt_completion", "text"]


def test_error_messages_and_type_checks_come_from_the_table():
    assert KNOWN_SHAPES_HINT == "prompt+chosen+rejected | messages | instruction+output | prompt+completion | text"
    assert TEXT_FIELDS == ("prompt", "chosen", "rejected", "instruction", "input", "output", "completion", "text")
    assert SHAPES["alpaca"].required == ("instruction", "output")


def test_text_shapes_map_onto_prompt_and_completion():
    alpaca = {"instruction": "Classify", "input": "my card was charged twice", "output": "billing"}
    assert text_record_fields("alpaca", alpaca) == ["Classify\n\nmy card was charged twice", "billing", None, None]
    assert text_record_fields("alpaca", {**alpaca, "input": ""}) == ["Classify", "billing", None, None]
    pair = {"prompt": "Where is my parcel?", "chosen": "It ships today.", "rejected": "No idea."}
    assert text_record_fields("preference", pair) == ["Where is my parcel?", "It ships today.", None, "No idea."]
    assert text_record_fields("alpaca", {"instruction": "Classify", "output": "x"}) == ["Classify", "x", None, None]
    assert text_record_fields("prompt_completion", {"prompt": "p", "completion": "c"}) == ["p", "c", None, None]
    assert text_record_fields("text", {"text": "t"}) == ["", "t", None, None]


def test_a_reply_may_be_an_assistant_message_or_a_list_of_one():
    assert reply_text("On its way.") == "On its way."
    assert reply_text({"role": "assistant", "content": "On its way."}) == "On its way."
    assert reply_text([{"role": "assistant", "content": "On its way."}]) == "On its way."
    two = [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert reply_text(two) == two and reply_text({"role": "user", "content": "x"}) == {"role": "user", "content": "x"}
