"""The limiter interface every client helper is written against."""

from __future__ import annotations

import abc
import asyncio
import functools
from collections.abc import Generator
from types import TracebackType
from typing import Any

from stepstream.ratelimiter import telemetry
from stepstream.ratelimiter.config import LimitSpec
from stepstream.ratelimiter.types import Decision, Mode, Priority

# How long acquire waits for a slot when the caller gives no timeout.
DEFAULT_TIMEOUT_S = 300.0


class WakePacer:
    """The key's own limit, checked again when a caller actually goes.

    Slots are reserved when a caller asks and kept by sleeping until they start. A
    process that stalls (a long GC pause, a busy event loop) wakes every caller whose
    slot fell in the stall at once: a burst the API never allowed. Checking the same
    rate and burst at wake time (GCRA on this process's clock) spaces them out again;
    no slot is wasted, the late callers only go a little later.
    """

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}

    async def release(self, spec: LimitSpec, cost: int) -> None:
        loop = asyncio.get_running_loop()
        interval = spec.period_s / spec.rate
        while True:
            now = loop.time()
            tat = max(self._tat.get(spec.key, now), now) + cost * interval
            early = tat - now - spec.burst * interval
            if early <= 1e-9:
                self._tat[spec.key] = tat
                return
            await asyncio.sleep(early)


class RateLimitRefused(Exception):
    """No slot within the caller's timeout; `retry_after_s` says when a retry could pass."""

    def __init__(self, key: str, retry_after_s: float) -> None:
        super().__init__(f"rate limit {key!r}: no slot within the timeout; retry after {retry_after_s:.3f} s")
        self.key = key
        self.retry_after_s = retry_after_s


class LimiterRequestError(Exception):
    """The limiter refused the request itself (unknown key, cost above the burst, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class LimiterUnavailable(Exception):
    """The limiter cannot decide (sidecar or store unreachable) and the mode is to fail closed."""


class Grant:
    """Tokens granted to the caller; `actual` can be set to settle a token-weighted estimate."""

    __slots__ = ("_limiter", "actual", "cost", "granted_at", "key", "mode", "waited_s")

    def __init__(self, limiter: Limiter, key: str, cost: int, decision: Decision) -> None:
        self._limiter = limiter
        self.key = key
        self.cost = cost
        self.waited_s = decision.wait_s
        self.granted_at = decision.granted_at
        self.mode = decision.mode
        # Tokens really used, when known after the call (e.g. LLM usage); settled on exit.
        self.actual: int | None = None

    async def settle(self, actual: int) -> None:
        """Charge what was really used instead of the estimate `cost`."""
        self.actual = None
        if actual != self.cost:
            await self._limiter.reconcile(self.key, self.cost, actual)


class Acquisition:
    """`await limiter.acquire(...)` or `async with limiter.acquire(...)`: returns after the wait."""

    __slots__ = ("_grant", "_limiter", "cost", "key", "priority", "timeout")

    def __init__(
        self, limiter: Limiter, key: str, cost: int, timeout: float | None, priority: Priority
    ) -> None:
        self._limiter = limiter
        self.key = key
        self.cost = cost
        self.timeout = DEFAULT_TIMEOUT_S if timeout is None else timeout
        self.priority = priority
        self._grant: Grant | None = None

    async def _run(self) -> Grant:
        observed = telemetry.for_process()
        if observed is not None:
            return await observed.acquire(self.key, self.cost, self._take)
        return await self._take()

    async def _take(self) -> Grant:
        decision = await self._limiter.decide(self.key, self.cost, self.timeout, self.priority)
        if not decision.granted:
            raise RateLimitRefused(self.key, decision.retry_after_s)
        if decision.wait_s > 0:
            # The slot is reserved: sleeping until it starts is all that is left to do.
            await asyncio.sleep(decision.wait_s)
        spec = self._limiter.limit_of(self.key)
        if spec is not None and spec.rate > 0:
            await self._limiter.pacer.release(spec, self.cost)
        return Grant(self._limiter, self.key, self.cost, decision)

    def __await__(self) -> Generator[Any, None, Grant]:
        return self._run().__await__()

    async def __aenter__(self) -> Grant:
        self._grant = await self._run()
        return self._grant

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        grant = self._grant
        if grant is not None and grant.actual is not None:
            await grant.settle(grant.actual)


class Limiter(abc.ABC):
    """What graph nodes and helpers use; `RemoteLimiter` and `LocalLimiter` implement it."""

    @functools.cached_property
    def pacer(self) -> WakePacer:
        return WakePacer()

    def limit_of(self, key: str) -> LimitSpec | None:
        """The key's limit, when known here (to pace callers that wake late)."""
        return None

    def acquire(
        self, key: str, cost: int = 1, timeout: float | None = None, priority: Priority = Priority.NORMAL
    ) -> Acquisition:
        """Take `cost` tokens of `key`, waiting up to `timeout` seconds for a reserved slot."""
        return Acquisition(self, key, cost, timeout, priority)

    @abc.abstractmethod
    async def decide(self, key: str, cost: int, timeout: float, priority: Priority) -> Decision:
        """The limiter's answer, without sleeping through the wait."""

    @abc.abstractmethod
    async def report_throttled(self, key: str, retry_after_s: float = 0.0) -> float:
        """An API answered 429: pause the key for every caller; returns the pause."""

    @abc.abstractmethod
    async def reconcile(self, key: str, reserved: int, actual: int) -> None:
        """Charge `actual` tokens instead of the `reserved` estimate."""

    async def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release connections and background tasks."""

    async def __aenter__(self) -> Limiter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


__all__ = [
    "Acquisition",
    "Grant",
    "Limiter",
    "LimiterRequestError",
    "LimiterUnavailable",
    "Mode",
    "RateLimitRefused",
]
