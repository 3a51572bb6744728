"""The limiter interface every client helper is written against."""

from __future__ import annotations

import abc
import asyncio
import functools
import time
from collections.abc import Generator, Mapping, Sequence
from types import TracebackType
from typing import Any

from stepstream.ratelimiter import telemetry
from stepstream.ratelimiter.config import LimitSpec
from stepstream.ratelimiter.types import Decision, LimitState, Mode, Priority

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
    """Tokens granted to the caller, from one key or several at once.

    What was really used, when known after the call (e.g. an LLM's usage), is
    settled on exit: `grant.actual = n` for the first key, or
    `grant.report_usage("openai-tpm", n)` for any key.
    """

    __slots__ = (
        "_limiter",
        "actual",
        "cost",
        "costs",
        "grant_id",
        "granted_at",
        "key",
        "mode",
        "usage",
        "waited_s",
    )

    def __init__(self, limiter: Limiter, costs: Mapping[str, int], decision: Decision) -> None:
        self._limiter = limiter
        self.costs = dict(costs)
        self.key, self.cost = next(iter(self.costs.items()))
        self.waited_s = decision.wait_s
        self.granted_at = decision.granted_at
        self.mode = decision.mode
        self.grant_id = decision.grant_id
        # Tokens of the first key really used; settled on exit.
        self.actual: int | None = None
        # Tokens really used per key, settled on exit.
        self.usage: dict[str, int] = {}

    def report_usage(self, key: str, actual: int) -> None:
        """Record what the call really used of `key` (settled on exit, or by `settle_all`)."""
        if key not in self.costs:
            raise KeyError(f"{key!r} is not one of this grant's keys ({', '.join(self.costs)})")
        self.usage[key] = actual

    async def settle(self, actual: int, key: str | None = None) -> None:
        """Charge what was really used of `key` (default: the first) instead of its estimate."""
        key = key or self.key
        if key == self.key:
            self.actual = None
        self.usage.pop(key, None)
        reserved = self.costs[key]
        if actual != reserved:
            await self._limiter.reconcile(key, reserved, actual, self.grant_id)

    async def settle_all(self) -> None:
        """Settle every usage reported so far."""
        if self.actual is not None:
            self.usage.setdefault(self.key, self.actual)
            self.actual = None
        for key, actual in list(self.usage.items()):
            await self.settle(actual, key)


class Acquisition:
    """`await limiter.acquire(...)` or `async with limiter.acquire(...)`: returns after the wait."""

    __slots__ = ("_grant", "_limiter", "cost", "costs", "key", "priority", "timeout")

    def __init__(
        self, limiter: Limiter, costs: Mapping[str, int], timeout: float | None, priority: Priority
    ) -> None:
        self._limiter = limiter
        self.costs = dict(costs)
        self.key, self.cost = next(iter(self.costs.items()))
        self.timeout = DEFAULT_TIMEOUT_S if timeout is None else timeout
        self.priority = priority
        self._grant: Grant | None = None

    async def _run(self) -> Grant:
        observed = telemetry.for_process()
        if observed is not None:
            return await observed.acquire(self.key, self.cost, self._take)
        return await self._take()

    async def _decide(self, timeout: float, priority: Priority) -> Decision:
        if len(self.costs) == 1:
            return await self._limiter.decide(self.key, self.cost, timeout, priority)
        return await self._limiter.decide_many(list(self.costs.items()), timeout, priority)

    async def _take(self) -> Grant:
        deadline = time.monotonic() + self.timeout
        priority = self.priority
        while True:
            decision = await self._decide(max(deadline - time.monotonic(), 0.0), priority)
            # Known once the limiter has been asked (a remote one learns its limits then).
            late_after = self._limiter.late_after_s(self.costs)
            if not decision.granted:
                raise RateLimitRefused("+".join(self.costs), decision.retry_after_s)
            if decision.wait_s > 0:
                # The slot is reserved: sleeping until it starts is all that is left to do.
                await asyncio.sleep(decision.wait_s)
            # Only a slot of its own (a lease's tokens have no slot each) can be given back.
            if late_after is None or not decision.grant_id or time.time() - decision.granted_at <= late_after:
                break
            # Woken too late (a stalled process): sent now, the request could reach the
            # API after the window's margin and land in a window that is already full.
            # It has not been sent, so its slot is given back and a new one taken.
            self._limiter.late_slots += 1
            for key, cost in self.costs.items():
                await self._limiter.reconcile(key, cost, 0, decision.grant_id)
            # It waited its turn once: the new slot is asked for ahead of the line, so a
            # caller in a busy process is not sent to the back again and again.
            priority = Priority.INTERACTIVE
        for key, cost in self.costs.items():
            spec = self._limiter.limit_of(key)
            if spec is not None and spec.rate > 0 and not spec.is_window:
                await self._limiter.pacer.release(spec, cost)
        return Grant(self._limiter, self.costs, decision)

    def __await__(self) -> Generator[Any, None, Grant]:
        return self._run().__await__()

    async def __aenter__(self) -> Grant:
        self._grant = await self._run()
        return self._grant

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        grant = self._grant
        if grant is not None:
            await grant.settle_all()


class Limiter(abc.ABC):
    """What graph nodes and helpers use; `RemoteLimiter` and `LocalLimiter` implement it."""

    # Slots given back because their caller woke later than half a window limit's margin.
    late_slots = 0

    def late_after_s(self, costs: Mapping[str, int]) -> float | None:
        """How late after its slot a caller may still go: half the smallest margin of
        the window limits among `costs` (the rest is for the trip to the API); None
        when no window limit is among them, or their limits are not known here."""
        margins = [
            spec.margin_s for key in costs if (spec := self.limit_of(key)) is not None and spec.is_window
        ]
        return min(margins) / 2 if margins else None

    @functools.cached_property
    def pacer(self) -> WakePacer:
        return WakePacer()

    def limit_of(self, key: str) -> LimitSpec | None:
        """The key's limit, when known here (to pace callers that wake late)."""
        return None

    def acquire(
        self,
        key: str,
        cost: int = 1,
        timeout: float | None = None,
        priority: Priority = Priority.NORMAL,
        *,
        also: Mapping[str, int] | None = None,
    ) -> Acquisition:
        """Take `cost` tokens of `key`, and `also` tokens of other keys in the same slot
        (all or nothing), waiting up to `timeout` seconds for a reserved slot."""
        costs = {key: cost}
        for other, n in (also or {}).items():
            if other in costs:
                raise ValueError(f"key {other!r} is named twice")
            costs[other] = n
        return Acquisition(self, costs, timeout, priority)

    def acquire_many(
        self,
        costs: Mapping[str, int] | Sequence[tuple[str, int]],
        timeout: float | None = None,
        priority: Priority = Priority.NORMAL,
    ) -> Acquisition:
        """Take tokens of several keys in one slot, all or nothing: e.g.
        `acquire_many({"openai-rpm": 1, "openai-tpm": 1200})`."""
        items = list(costs.items()) if isinstance(costs, Mapping) else list(costs)
        if not items:
            raise ValueError("acquire_many needs at least one key")
        first, cost = items[0]
        return self.acquire(first, cost, timeout, priority, also=dict(items[1:]))

    @abc.abstractmethod
    async def decide(self, key: str, cost: int, timeout: float, priority: Priority) -> Decision:
        """The limiter's answer, without sleeping through the wait."""

    async def decide_many(
        self, items: Sequence[tuple[str, int]], timeout: float, priority: Priority
    ) -> Decision:
        """The answer for several keys in one slot, all or nothing."""
        raise NotImplementedError(f"{type(self).__name__} cannot take several keys at once")

    async def observe_remaining(self, key: str, remaining: int, reset_after_s: float | None = None) -> int:
        """The API said it has `remaining` of `key` left: consume what it has fewer of than
        the shared budget thinks, for every replica; returns the tokens consumed."""
        return 0

    @abc.abstractmethod
    async def report_throttled(self, key: str, retry_after_s: float = 0.0) -> float:
        """An API answered 429: pause the key for every caller; returns the pause."""

    @abc.abstractmethod
    async def reconcile(self, key: str, reserved: int, actual: int, grant_id: str = "") -> None:
        """Charge `actual` tokens instead of the `reserved` estimate (of grant `grant_id`)."""

    @abc.abstractmethod
    async def describe_limits(self) -> list[tuple[LimitSpec, LimitState]]:
        """Every declared limit with its live state (DescribeLimit), in the order declared."""

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
