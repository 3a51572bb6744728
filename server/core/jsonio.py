"""JSON in and out of the core: one encoding for every payload (see protos/common.proto)."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from langchain_core.messages import BaseMessage
from langgraph.types import Command, Interrupt, Send
from pydantic import BaseModel

from stepstream.server.core.errors import InvalidArgument

_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _default(obj: Any) -> Any:
    if isinstance(obj, BaseMessage):
        return obj.model_dump()
    if isinstance(obj, Send):
        return {"__send__": {"node": obj.node, "arg": obj.arg}}
    if isinstance(obj, Interrupt):
        return {"id": obj.id, "value": obj.value}
    if isinstance(obj, Command):
        return {"__command__": {k: v for k, v in dataclasses.asdict(obj).items() if v is not None}}
    if isinstance(obj, BaseModel):
        return obj.model_dump()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, BaseException):
        return {"error_type": type(obj).__name__, "message": str(obj)}
    return {"__repr__": repr(obj)}


def dumps(value: Any) -> str:
    """Encode any graph value; what JSON cannot express becomes {"__repr__": ...}."""
    return orjson.dumps(value, default=_default, option=_OPTS).decode()


def dumpb(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=_OPTS)


def loads(text: str | bytes) -> Any:
    return orjson.loads(text)


def parse_field(field: str, text: str, *, object_only: bool = False) -> Any:
    """Decode a request's `_json` field; empty means absent (None)."""
    if not text:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(field, f"is not valid JSON ({exc})") from None
    if object_only and not isinstance(value, dict):
        raise InvalidArgument(field, f"must be a JSON object, got {type(value).__name__}")
    return value


def json_contains(have: Any, want: Any) -> bool:
    """JSON containment, as PostgreSQL's `@>` decides it: objects by key, lists by members,
    scalars equal (a boolean is not a number)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(
            k in have and json_contains(have[k], v) for k, v in want.items()
        )
    if isinstance(want, list):
        return isinstance(have, list) and all(any(json_contains(h, w) for h in have) for w in want)
    if isinstance(want, bool) or isinstance(have, bool):
        return have is want
    if isinstance(want, int | float) and isinstance(have, int | float):
        return have == want
    return bool(type(have) is type(want) and have == want)
