"""The `_json` fields of the contract: one JSON value as UTF-8 text, "" meaning absent.

The SDK hides the encoding: callers pass and receive plain Python objects.
Python `None` given for an optional payload means "absent" (the empty
string); a value that must be able to be JSON null (a resume value) is
always encoded, so `None` becomes "null" there.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import orjson

# Decoded JSON: dict / list / str / int / float / bool / None. `Any` rather
# than a recursive union, so callers can index results without narrowing.
Json: TypeAlias = Any

_DUMP_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class JsonEncodeError(TypeError):
    """A payload holds a value JSON cannot express."""


def _default(value: Any) -> Any:
    # LangChain messages and other pydantic models: their dict form is what
    # the contract documents for chat messages ({"type": "human", ...}).
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):
        return model_dump()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode(value: Json) -> str:
    """Encode a value that must be present (None becomes "null")."""
    try:
        return orjson.dumps(value, default=_default, option=_DUMP_OPTIONS).decode()
    except orjson.JSONEncodeError as exc:
        raise JsonEncodeError(str(exc)) from exc


def encode_optional(value: Json) -> str:
    """Encode an optional payload: None is "absent", the empty string."""
    return "" if value is None else encode(value)


def decode(text: str) -> Json:
    """Decode a `_json` field; "" (absent) decodes to None like JSON null."""
    if not text:
        return None
    return orjson.loads(text)
