"""Core errors as HTTP answers: `{"detail": message}` with the status LangGraph's server uses."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from stepstream.server.core import errors

STATUS: list[tuple[type[Exception], int]] = [
    (errors.NotFound, 404),
    (errors.AlreadyExists, 409),
    # A busy session (multitask "reject"), a run that already ended: a conflict with its state.
    (errors.FailedPrecondition, 409),
    (errors.InvalidArgument, 422),
    (errors.ResourceExhausted, 429),
    (errors.DeadlineExceeded, 408),
    (errors.Unavailable, 503),
]


class HttpError(Exception):
    """An answer a handler decided on (bad path id, bad body), with its status and detail."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def status_of(exc: Exception) -> int:
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def error_response(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HttpError)
    return error_response(exc.status, exc.detail)


async def on_core_error(request: Request, exc: Exception) -> Response:
    headers = None
    if isinstance(exc, errors.ResourceExhausted):
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
    return error_response(status_of(exc), str(exc), headers)
