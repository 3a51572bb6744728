"""Stand-in for stepstream's limiter client where there is no stepstream: no limiter is ever installed."""

from typing import Any, Protocol


class Limiter(Protocol):
    def acquire(self, key: str, cost: int = 1, timeout: float | None = None) -> Any: ...

    async def report_throttled(self, key: str, retry_after_s: float) -> None: ...


def current_limiter() -> Limiter:
    raise RuntimeError("no rate limiter is installed: this server has none")
