"""Errors of the limiter core; the servicer maps each to one gRPC status code."""

from __future__ import annotations


class LimiterError(Exception):
    """Base of every error the limiter raises on purpose."""


class InvalidRequest(LimiterError):
    """A request field is wrong (INVALID_ARGUMENT with a BadRequest field violation)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class UnknownKey(LimiterError):
    """No limit is declared for the key (NOT_FOUND)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no limit is declared for key {key!r}")
        self.key = key


class StoreUnavailable(LimiterError):
    """The shared store is unreachable and the configured mode is to fail closed (UNAVAILABLE)."""


class TooManyWaiters(LimiterError):
    """Too many callers already wait on the key (RESOURCE_EXHAUSTED with RetryInfo)."""

    def __init__(self, key: str, retry_after_s: float) -> None:
        super().__init__(f"too many callers wait on key {key!r}")
        self.key = key
        self.retry_after_s = retry_after_s
