"""Domain errors of the core; the API layer maps each to a gRPC status code."""

from __future__ import annotations


class StepstreamError(Exception):
    """Base of every error a caller is meant to see."""


class NotFound(StepstreamError):
    pass


class AlreadyExists(StepstreamError):
    pass


class InvalidArgument(StepstreamError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.description = message


class FailedPrecondition(StepstreamError):
    pass


class SessionBusy(FailedPrecondition):
    """The session has an active run and the busy policy is reject (a cron records the fire
    as rejected)."""


class ResourceExhausted(StepstreamError):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeadlineExceeded(StepstreamError):
    pass


class Unavailable(StepstreamError):
    pass
