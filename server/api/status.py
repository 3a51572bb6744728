"""Domain errors ⇄ gRPC status codes, with google.rpc details a client can act on.

Every call also ends with a trailer naming the replica that answered it. Workers of
`serve --workers` share one port, so a client cannot tell from an address which
process a connection reached; the SDK groups its connections by this trailer and
balances calls over processes, not over connections.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from stepstream.server.core import errors

log = logging.getLogger(__name__)

REPLICA_TRAILER = "stepstream-replica"


def replica_trailer(replica: str) -> tuple[tuple[str, str], ...]:
    """The trailing metadata every call of `replica` ends with (a servicer's `trailer`)."""
    return ((REPLICA_TRAILER, replica),)


_CODES: dict[type[errors.StepstreamError], int] = {
    errors.NotFound: code_pb2.NOT_FOUND,
    errors.AlreadyExists: code_pb2.ALREADY_EXISTS,
    errors.InvalidArgument: code_pb2.INVALID_ARGUMENT,
    errors.FailedPrecondition: code_pb2.FAILED_PRECONDITION,
    errors.ResourceExhausted: code_pb2.RESOURCE_EXHAUSTED,
    errors.DeadlineExceeded: code_pb2.DEADLINE_EXCEEDED,
    errors.Unavailable: code_pb2.UNAVAILABLE,
}


def status_of(exc: BaseException) -> status_pb2.Status:
    """The google.rpc.Status for an exception (INTERNAL for anything unexpected)."""
    if not isinstance(exc, errors.StepstreamError):
        return status_pb2.Status(
            code=code_pb2.INTERNAL, message=f"internal error: {type(exc).__name__}: {exc}"
        )
    code = next((c for cls, c in _CODES.items() if isinstance(exc, cls)), code_pb2.UNKNOWN)
    status = status_pb2.Status(code=code, message=str(exc))
    detail = any_pb2.Any()
    if isinstance(exc, errors.InvalidArgument):
        violation = error_details_pb2.BadRequest.FieldViolation(field=exc.field, description=exc.description)
        detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
        status.details.append(detail)
    elif isinstance(exc, errors.ResourceExhausted):
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(exc.retry_after * 1e9))
        detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        status.details.append(detail)
    return status


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: Exception) -> None:
    if not isinstance(exc, errors.StepstreamError):
        log.exception("unexpected error in a request")
    await context.abort_with_status(rpc_status.to_status(status_of(exc)))


Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


def unary(method: Handler) -> Handler:
    """Map the core's errors to status codes for a unary handler (of a servicer with a `trailer`)."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        context.set_trailing_metadata(self.trailer)
        try:
            return await method(self, request, context)
        except Exception as exc:
            await _abort(context, exc)

    return wrapper  # type: ignore[return-value]


def streaming(method: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    """Map the core's errors to status codes for a server-streaming handler (of a servicer with
    a `trailer`)."""

    @functools.wraps(method)
    async def wrapper(
        self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        context.set_trailing_metadata(self.trailer)
        try:
            async for item in method(self, request, context):
                yield item
        except Exception as exc:
            await _abort(context, exc)

    return wrapper
