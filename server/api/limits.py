"""Input limits on every request, checked before a handler runs (SECURITY.md lists them).

One walk over the fields a request sets: a JSON payload (any `*_json` field) is
bounded in size and nesting depth, other strings in length, repeated and map
fields in entries, numbers to what the stores can hold. A request beyond a
limit is answered INVALID_ARGUMENT with a BadRequest field violation naming the
field and the limit, before any work or any write happens.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from grpc_status import rpc_status

from stepstream.security.handlers import with_check
from stepstream.server.api.status import status_of
from stepstream.server.core.errors import InvalidArgument
from stepstream.server.core.pages import MAX_PAGE_SIZE
from stepstream.server.settings import ServerSettings

# Integers beyond this are not exact in JSON (other clients) and overflow signed 64-bit columns.
MAX_INTEGER = 2**53 - 1
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    max_payload_bytes: int = 1024 * 1024
    max_payload_depth: int = 64
    max_list_entries: int = 256
    max_string_bytes: int = 1024

    @classmethod
    def of(cls, settings: ServerSettings) -> RequestLimits:
        return cls(
            settings.max_payload_bytes,
            settings.max_payload_depth,
            settings.max_list_entries,
            settings.max_string_bytes,
        )


def json_depth(text: str) -> int:
    """Deepest nesting of arrays and objects in JSON text (strings skipped)."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_JSON_STRING.sub('""', text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def check_request(message: Message, limits: RequestLimits, prefix: str = "") -> None:
    """Raise InvalidArgument for the first field of `message` beyond a limit."""
    for field, value in message.ListFields():
        name = f"{prefix}{field.name}"
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            _check_count(name, len(value), limits)
            json = field.name.endswith("_json")
            for key, item in value.items():
                _check_string(f"{name} key", str(key), limits)
                _check_scalar(f"{name}[{key}]", json, item, limits)
        elif field.is_repeated:
            _check_count(name, len(value), limits)
            for i, item in enumerate(value):
                if field.type == FieldDescriptor.TYPE_MESSAGE:
                    check_request(item, limits, f"{name}[{i}].")
                else:
                    _check_scalar(f"{name}[{i}]", False, item, limits)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            check_request(value, limits, f"{name}.")
        elif field.name == "page_size" and value > MAX_PAGE_SIZE:
            raise InvalidArgument(name, f"must be at most {MAX_PAGE_SIZE}")
        else:
            _check_scalar(name, field.name.endswith("_json"), value, limits)


def _check_count(name: str, count: int, limits: RequestLimits) -> None:
    if count > limits.max_list_entries:
        raise InvalidArgument(name, f"has {count} entries; at most {limits.max_list_entries} are accepted")


def _check_string(name: str, value: str, limits: RequestLimits) -> None:
    size = len(value.encode())
    if size > limits.max_string_bytes:
        raise InvalidArgument(name, f"is {size} bytes; at most {limits.max_string_bytes} are accepted")


def _check_scalar(name: str, json: bool, value: Any, limits: RequestLimits) -> None:
    if isinstance(value, str):
        if not json:
            _check_string(name, value, limits)
            return
        size = len(value.encode())
        if size > limits.max_payload_bytes:
            raise InvalidArgument(
                name, f"is {size} bytes of JSON; at most {limits.max_payload_bytes} are accepted"
            )
        # Counting brackets is cheap; only text that could be too deep is scanned.
        if value.count("{") + value.count("[") > limits.max_payload_depth:
            depth = json_depth(value)
            if depth > limits.max_payload_depth:
                raise InvalidArgument(
                    name, f"nests {depth} levels deep; at most {limits.max_payload_depth} are accepted"
                )
    elif isinstance(value, float):
        if not math.isfinite(value) or value < 0:
            raise InvalidArgument(name, f"must be a finite number >= 0, got {value!r}")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
        raise InvalidArgument(name, f"must be at most {MAX_INTEGER}")


class RequestLimitsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Checks unary requests before their handler; streamed requests are checked one by one
    by the handler that reads them (the session stream answers each with its own error)."""

    def __init__(self, limits: RequestLimits, prefixes: tuple[str, ...] = ("/stepstream.",)) -> None:
        self._limits = limits
        self._prefixes = prefixes

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler: Any = await continuation(details)
        method: str = details.method  # type: ignore[attr-defined]
        if handler is None or not method.startswith(self._prefixes) or handler.request_streaming:
            return handler
        limits = self._limits

        async def checked(request: Any, context: Any) -> None:
            try:
                check_request(request, limits)
            except InvalidArgument as exc:
                await context.abort_with_status(rpc_status.to_status(status_of(exc)))

        return with_check(handler, checked)
