"""A run's context: the JSON object nodes read through LangGraph's `Runtime.context`.

A graph declares its type with `context_schema` (a dataclass, TypedDict or
pydantic model). A run's context is checked against it with pydantic before
anything is stored, so a bad one is refused naming the field at fault; the run
stores the context as JSON, and every attempt at the run (on whichever replica)
validates it again into the type the graph's nodes expect.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pydantic

from stepstream.server.core.errors import InvalidArgument
from stepstream.server.core.registry import LoadedGraph

# A graph's context_schema is fixed once it is loaded: one adapter per type, built on first use.
_ADAPTERS: dict[object, pydantic.TypeAdapter[Any]] = {}


def _adapter(schema: type[Any]) -> pydantic.TypeAdapter[Any]:
    adapter = _ADAPTERS.get(schema)
    if adapter is None:
        adapter = _ADAPTERS[schema] = pydantic.TypeAdapter(schema)
    return adapter


def schema_json(loaded: LoadedGraph) -> str:
    """The JSON Schema of the graph's context_schema (JSON text); "" when it declares none."""
    schema = loaded.graph.context_schema
    if schema is None:
        return ""
    try:
        return json.dumps(_adapter(schema).json_schema())
    except Exception:  # a type pydantic cannot describe still validates, or is passed as is
        return "{}"


def validate(
    loaded: LoadedGraph, context: Mapping[str, Any] | None, field: str, *, partial: bool = False
) -> Any:
    """The context as the graph's nodes get it (an instance of its context_schema), or
    InvalidArgument naming `field`.<the first bad key>. None stays None (no context given).

    `partial`: check only the keys given (an assistant's context, which runs complete)."""
    if context is None:
        return None
    schema = loaded.graph.context_schema
    if schema is None:
        return dict(context)  # no declared type: nodes get the object as sent
    try:
        adapter = _adapter(schema)
    except Exception:
        return dict(context)
    try:
        return adapter.validate_python(dict(context))
    except pydantic.ValidationError as exc:
        errors = [e for e in exc.errors(include_url=False) if not (partial and e["type"] == "missing")]
        if not errors:
            return dict(context)
        error = errors[0]
        where = ".".join(str(part) for part in error["loc"])
        raise InvalidArgument(
            f"{field}.{where}" if where else field,
            f"{error['msg']} (graph {loaded.spec.graph_id!r} declares its context_schema "
            f"{getattr(schema, '__name__', schema)})",
        ) from None
