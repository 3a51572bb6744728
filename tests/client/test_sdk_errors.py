"""gRPC failures map to StepstreamError subclasses with their google.rpc details."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from stepstream.client import errors
from stepstream.client.errors import (
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    StepstreamError,
    from_rpc_error,
    from_stream_error,
)


def rpc_error(
    code: grpc.StatusCode, message: str, *details: Message, status_code: int | None = None
) -> grpc.RpcError:
    trailing = grpc.aio.Metadata()
    if details or status_code is not None:
        status = status_pb2.Status(
            code=code.value[0] if status_code is None else status_code, message=message
        )
        for detail in details:
            packed = any_pb2.Any()
            packed.Pack(detail)
            status.details.append(packed)
        trailing = grpc.aio.Metadata(("grpc-status-details-bin", status.SerializeToString()))
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details=message)


def test_bad_request_field_violations_are_carried() -> None:
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="input_json", description="not JSON"),
            error_details_pb2.BadRequest.FieldViolation(field="graph_id", description="empty"),
        ]
    )
    error = from_rpc_error(rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "bad request", bad))
    assert isinstance(error, InvalidArgumentError)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.message == "bad request"
    assert error.field_violations == (
        FieldViolation("input_json", "not JSON"),
        FieldViolation("graph_id", "empty"),
    )
    assert str(error) == "INVALID_ARGUMENT: bad request [input_json: not JSON; graph_id: empty]"


def test_retry_info_gives_the_delay() -> None:
    info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2, nanos=500_000_000))
    error = from_rpc_error(rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full", info))
    assert isinstance(error, ResourceExhaustedError)
    assert error.retry_delay == 2.5
    assert str(error) == "RESOURCE_EXHAUSTED: queue full (retry after 2.5s)"


def test_plain_status_without_details() -> None:
    error = from_rpc_error(rpc_error(grpc.StatusCode.NOT_FOUND, "no run r1"))
    assert isinstance(error, NotFoundError)
    assert error.field_violations == ()
    assert error.retry_delay is None
    assert isinstance(error.__cause__, grpc.RpcError)


def test_inconsistent_details_keep_the_call_status() -> None:
    # grpcio-status refuses details whose code differs from the call's; the basics stay.
    error = from_rpc_error(rpc_error(grpc.StatusCode.NOT_FOUND, "gone", status_code=3))
    assert isinstance(error, NotFoundError)
    assert error.message == "gone"


@pytest.mark.parametrize("code", [c for c in grpc.StatusCode if c != grpc.StatusCode.OK])
def test_every_status_code_has_its_own_class(code: grpc.StatusCode) -> None:
    error = from_rpc_error(rpc_error(code, "m"))
    assert type(error) is not StepstreamError
    assert isinstance(error, StepstreamError)
    assert error.code == code
    assert type(error).code == code
    assert type(error).__name__ in errors.__dict__


def test_stream_error_maps_code_number_and_field() -> None:
    error = from_stream_error(9, "no pending interrupt", "resume")
    assert isinstance(error, errors.FailedPreconditionError)
    assert error.field_violations == (FieldViolation("resume", "no pending interrupt"),)
    assert from_stream_error(3, "bad").field_violations == ()
    assert isinstance(from_stream_error(999, "?"), errors.UnknownError)


def test_errors_can_be_raised_and_caught_by_base_class() -> None:
    with pytest.raises(StepstreamError) as caught:
        raise from_rpc_error(rpc_error(grpc.StatusCode.UNAVAILABLE, "down"))
    assert caught.value.code_name == "UNAVAILABLE"
