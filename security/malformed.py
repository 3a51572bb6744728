"""Requests whose bytes are not the method's protobuf message answer INVALID_ARGUMENT.

grpcio decodes a request before any handler runs and answers a decode error
with UNKNOWN (and an error log). This interceptor decodes instead: a request
that does not parse becomes a marker, and the call is answered INVALID_ARGUMENT
with a field violation on "request" (for a stream, at the message that failed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from stepstream.security.handlers import with_check


class Malformed:
    """Stands in for a request that could not be decoded."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _decoder(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError as exc:
            return Malformed(str(exc))

    return decode


async def _refuse(context: Any, reason: str) -> None:
    violation = error_details_pb2.BadRequest.FieldViolation(field="request", description=reason)
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    status = status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT, message=f"request: not a valid message ({reason})", details=[detail]
    )
    await context.abort_with_status(rpc_status.to_status(status))


async def _checked(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, Malformed):
            await _refuse(context, request.reason)
        yield request


class MalformedRequestInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        h: Any = await continuation(details)
        if h is None or h.request_deserializer is None:
            return h

        async def refuse_malformed(request: Any, context: Any) -> None:
            if isinstance(request, Malformed):
                await _refuse(context, request.reason)

        return with_check(h, refuse_malformed, _checked, _decoder(h.request_deserializer))
