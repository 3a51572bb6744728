"""gRPC failures as exceptions a caller can catch by meaning.

Each canonical status code has its own subclass of StepstreamError, carrying
the code, the message and the `google.rpc` details the server attached:
BadRequest field violations (which request field was wrong) and RetryInfo
(how long to wait after RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status


@dataclasses.dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class StepstreamError(Exception):
    """A call failed with a non-OK gRPC status."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        field_violations: Iterable[FieldViolation] = (),
        retry_delay: float | None = None,
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.field_violations: tuple[FieldViolation, ...] = tuple(field_violations)
        # Seconds the server asked us to wait before retrying (RetryInfo).
        self.retry_delay = retry_delay

    @property
    def code_name(self) -> str:
        return str(self.code.name)

    def __str__(self) -> str:
        text = f"{self.code_name}: {self.message}"
        if self.field_violations:
            fields = "; ".join(f"{v.field}: {v.description}" for v in self.field_violations)
            text += f" [{fields}]"
        if self.retry_delay is not None:
            text += f" (retry after {self.retry_delay:g}s)"
        return text


class CallCancelledError(StepstreamError):
    """The call was cancelled (by the caller, or the server went away mid-call)."""

    code = grpc.StatusCode.CANCELLED


class UnknownError(StepstreamError):
    code = grpc.StatusCode.UNKNOWN


class InvalidArgumentError(StepstreamError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceededError(StepstreamError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFoundError(StepstreamError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(StepstreamError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDeniedError(StepstreamError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhaustedError(StepstreamError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPreconditionError(StepstreamError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class AbortedError(StepstreamError):
    code = grpc.StatusCode.ABORTED


class OutOfRangeError(StepstreamError):
    code = grpc.StatusCode.OUT_OF_RANGE


class UnimplementedError(StepstreamError):
    code = grpc.StatusCode.UNIMPLEMENTED


class InternalError(StepstreamError):
    code = grpc.StatusCode.INTERNAL


class UnavailableError(StepstreamError):
    code = grpc.StatusCode.UNAVAILABLE


class DataLossError(StepstreamError):
    code = grpc.StatusCode.DATA_LOSS


class UnauthenticatedError(StepstreamError):
    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: dict[grpc.StatusCode, type[StepstreamError]] = {
    cls.code: cls
    for cls in (
        CallCancelledError,
        UnknownError,
        InvalidArgumentError,
        DeadlineExceededError,
        NotFoundError,
        AlreadyExistsError,
        PermissionDeniedError,
        ResourceExhaustedError,
        FailedPreconditionError,
        AbortedError,
        OutOfRangeError,
        UnimplementedError,
        InternalError,
        UnavailableError,
        DataLossError,
        UnauthenticatedError,
    )
}
_BY_NUMBER: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


def status_code(number: int) -> grpc.StatusCode:
    """The StatusCode for a google.rpc.Code number (UNKNOWN when out of range)."""
    return _BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def make_error(
    code: grpc.StatusCode,
    message: str,
    *,
    field_violations: Iterable[FieldViolation] = (),
    retry_delay: float | None = None,
) -> StepstreamError:
    """The StepstreamError subclass for `code`."""
    cls = _BY_CODE.get(code, StepstreamError)
    return cls(message, code=code, field_violations=field_violations, retry_delay=retry_delay)


def _details(status: status_pb2.Status) -> tuple[list[FieldViolation], float | None]:
    violations: list[FieldViolation] = []
    retry_delay: float | None = None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            retry_delay = info.retry_delay.ToTimedelta().total_seconds()
    return violations, retry_delay


def from_rpc_error(error: grpc.RpcError) -> StepstreamError:
    """Translate a failed call (sync or grpc.aio) into a StepstreamError."""
    call: Any = error
    code: grpc.StatusCode = call.code() if callable(getattr(call, "code", None)) else grpc.StatusCode.UNKNOWN
    message: str = (call.details() if callable(getattr(call, "details", None)) else None) or str(error)
    try:
        status = rpc_status.from_call(call)
    except (ValueError, AttributeError, TypeError):
        # Detail trailer inconsistent with the call's own status: keep the basics.
        status = None
    violations: list[FieldViolation] = []
    retry_delay: float | None = None
    if status is not None:
        violations, retry_delay = _details(status)
    error_out = make_error(code, message, field_violations=violations, retry_delay=retry_delay)
    error_out.__cause__ = error
    return error_out


def from_stream_error(code: int, message: str, field: str = "") -> StepstreamError:
    """Translate a SessionStreamResponse.error (the stream stays open) into an exception."""
    violations = [FieldViolation(field, message)] if field else []
    return make_error(status_code(code), message, field_violations=violations)
