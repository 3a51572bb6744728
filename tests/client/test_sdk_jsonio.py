"""The SDK's JSON encoding of `_json` fields: "" is absent, None is null where a value is required."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from stepstream.client.jsonio import JsonEncodeError, decode, encode, encode_optional


def test_round_trip_keeps_values() -> None:
    value = {"x": 1, "f": 1.5, "s": "é✓", "l": [1, None, True], "nested": {"k": []}}
    assert decode(encode(value)) == value


def test_optional_none_is_absent_but_required_none_is_null() -> None:
    assert encode_optional(None) == ""
    assert encode(None) == "null"
    assert encode_optional(0) == "0"
    assert encode_optional({}) == "{}"


def test_absent_decodes_to_none() -> None:
    assert decode("") is None
    assert decode("null") is None


def test_langchain_messages_use_their_dict_form() -> None:
    decoded = decode(encode({"messages": [HumanMessage("hi"), AIMessage("yo", id="m1")]}))
    assert decoded["messages"][0]["type"] == "human"
    assert decoded["messages"][0]["content"] == "hi"
    assert decoded["messages"][1] == {**decoded["messages"][1], "type": "ai", "content": "yo", "id": "m1"}


def test_tuples_sets_and_int_keys_are_encoded() -> None:
    assert decode(encode({"t": (1, 2), "s": {3}, 4: "four"})) == {"t": [1, 2], "s": [3], "4": "four"}


def test_unserializable_value_is_a_clear_error() -> None:
    with pytest.raises(JsonEncodeError, match="object"):
        encode({"bad": object()})


def test_malformed_text_raises() -> None:
    with pytest.raises(ValueError):
        decode("{nope")
