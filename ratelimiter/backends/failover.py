"""Keep answering when Redis is unreachable: fail closed, or a conservative local budget.

While the store is healthy every call goes to it. The first call that fails or
takes longer than the store timeout marks it down; from then on calls are
answered at once by the configured mode (no call waits on a dead Redis), and
one call every `retry_s` tries the store again, so the shared budget comes back
by itself when Redis does.

The local budget is each limit divided by the number of sidecars expected to
share it, so the replicas together stay within the global limit while cut off.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from stepstream.ratelimiter.backends.base import Backend, BatchResult, Peek
from stepstream.ratelimiter.backends.memory import MemoryBackend
from stepstream.ratelimiter.config import FailureMode, LimitSpec
from stepstream.ratelimiter.errors import StoreUnavailable
from stepstream.ratelimiter.types import Mode

log = logging.getLogger(__name__)
T = TypeVar("T")


class FailoverBackend:
    def __init__(
        self,
        store: Backend,
        mode: FailureMode,
        expected_replicas: int,
        timeout_s: float,
        retry_s: float,
        on_change: Callable[[bool], None] | None = None,
        horizon_s: float = 0.0,
    ) -> None:
        self._store = store
        self._mode = mode
        self._share = expected_replicas
        self._timeout = timeout_s
        self._retry = retry_s
        self._local = MemoryBackend(mode=Mode.LOCAL)
        self._scaled: dict[LimitSpec, LimitSpec] = {}
        self._down_since: float | None = None
        self._next_try = 0.0
        self._probing = False
        self._on_change = on_change
        # How far ahead slots may already be reserved in the store (reserve_ahead).
        self._horizon_ns = int(horizon_s * 1e9)
        # Keys the local budget answered for during the current outage.
        self._used_while_down: set[LimitSpec] = set()

    @property
    def healthy(self) -> bool:
        return self._down_since is None

    def _local_spec(self, spec: LimitSpec) -> LimitSpec:
        if self._down_since is not None:
            self._used_while_down.add(spec)
        scaled = self._scaled.get(spec)
        if scaled is None:
            scaled = self._scaled[spec] = spec.scaled(self._share)
            if self._down_since is not None:
                self._local.empty(scaled, self._horizon_ns)
        return scaled

    async def _call(
        self, store_call: Callable[[], Awaitable[T]], local_call: Callable[[], Awaitable[T]]
    ) -> T:
        if self._down_since is not None:
            now = time.monotonic()
            # One caller at a time tries the store again; the others are answered locally.
            if now < self._next_try or self._probing:
                return await self._degraded(local_call)
            self._probing = True
        try:
            async with asyncio.timeout(self._timeout):
                if self._down_since is not None:
                    await self._hand_back()
                result = await store_call()
        except Exception as exc:  # any store error: refused connection, timeout, protocol
            self._mark_down(exc)
            return await self._degraded(local_call)
        finally:
            self._probing = False
        if self._down_since is not None:
            log.warning(
                "rate-limit store is back after %.1f s: shared budget again",
                time.monotonic() - self._down_since,
            )
            self._down_since = None
            if self._on_change:
                self._on_change(True)
        return result

    async def _hand_back(self) -> None:
        """Before the store answers again: the slots local budgets granted ahead are
        still to be used, here and in the other sidecars, which keep granting locally
        until their next retry; so the store grants nothing for a key used locally
        until they have started, then starts empty (a restarted Redis would otherwise
        open with a full burst on top of them)."""
        others = self._horizon_ns + int(self._retry * 1e9)
        for spec in self._used_while_down:
            local = self._scaled[spec]
            committed = self._local.committed_ns(local)
            if spec.is_window:
                # A window counts what was granted, wherever: the local grants go into
                # the shared log where they were made (each sidecar hands back its own
                # when it reconnects), and nothing is granted until the others have.
                await self._store.record(spec, self._local.granted(local))
                await self._store.pause(spec, max(committed, others))
            else:
                await self._store.hold(spec, max(committed, others))
        self._used_while_down.clear()

    def _mark_down(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._down_since is None:
            log.warning("rate-limit store unreachable (%r): %s budget", exc, self._mode)
            self._down_since = now
            # Slots up to the horizon may already be reserved in the store, by this
            # sidecar and the others (or by the call that timed out): the local budget
            # starts empty once they have started, so an outage adds no burst on top.
            for local in self._scaled.values():
                self._local.empty(local, self._horizon_ns)
            if self._on_change:
                self._on_change(False)
        self._next_try = now + self._retry

    async def _degraded(self, local_call: Callable[[], Awaitable[T]]) -> T:
        if self._mode == "closed":
            raise StoreUnavailable("the rate-limit store is unreachable and the limiter fails closed")
        return await local_call()

    async def reserve(
        self, spec: LimitSpec, requests: Sequence[tuple[int, int]], ids: Sequence[str] = ()
    ) -> BatchResult:
        local = self._local_spec(spec)

        async def from_local() -> BatchResult:
            # A cost above the local budget's smaller burst could never fit: it is
            # admitted when the local bucket is full and the excess charged as debt,
            # so the local budget still counts every token.
            fit = [(min(n, local.burst), wait) for n, wait in requests]
            result = await self._local.reserve(local, fit, ids)
            for (n, _), (f, _) in zip(requests[: len(result.waits_ns)], fit, strict=False):
                if n > f:
                    await self._local.adjust(local, n - f)
            return result

        return await self._call(lambda: self._store.reserve(spec, requests, ids), from_local)

    async def reserve_set(
        self, specs: Sequence[LimitSpec], requests: Sequence[tuple[Sequence[int], int]], ids: Sequence[str]
    ) -> BatchResult:
        local = [self._local_spec(spec) for spec in specs]

        async def from_local() -> BatchResult:
            # Costs above a local budget's smaller size are capped, and the rest charged as debt.
            fit = [([min(n, s.burst) for s, n in zip(local, costs, strict=True)], w) for costs, w in requests]
            result = await self._local.reserve_set(local, fit, ids)
            for i in range(len(result.waits_ns)):
                for s, n, f in zip(local, requests[i][0], fit[i][0], strict=True):
                    if n > f:
                        await self._local.adjust(s, n - f, ids[i] if i < len(ids) else "", f)
            return result

        return await self._call(lambda: self._store.reserve_set(specs, requests, ids), from_local)

    async def adjust(self, spec: LimitSpec, tokens: int, grant_id: str = "", reserved: int = 0) -> Mode:
        local = self._local_spec(spec)
        return await self._call(
            lambda: self._store.adjust(spec, tokens, grant_id, reserved),
            lambda: self._local.adjust(local, tokens, grant_id, reserved),
        )

    async def observe(self, spec: LimitSpec, remaining: int, reset_after_ns: int | None) -> tuple[int, Mode]:
        local = self._local_spec(spec)
        # The local budget learns too (its share of what is left), in case the store goes.
        await self._local.observe(local, remaining // self._share, reset_after_ns)
        return await self._call(
            lambda: self._store.observe(spec, remaining, reset_after_ns),
            lambda: self._local.observe(local, remaining // self._share, reset_after_ns),
        )

    async def pause(self, spec: LimitSpec, duration_ns: int) -> Mode:
        local = self._local_spec(spec)
        # Pause the local budget too, so the pause holds if the store goes away.
        await self._local.pause(local, duration_ns)
        return await self._call(
            lambda: self._store.pause(spec, duration_ns), lambda: self._local.pause(local, duration_ns)
        )

    async def peek(self, spec: LimitSpec) -> Peek:
        local = self._local_spec(spec)
        return await self._call(lambda: self._store.peek(spec), lambda: self._local.peek(local))

    async def hold(self, spec: LimitSpec, duration_ns: int) -> None:
        local = self._local_spec(spec)
        await self._call(
            lambda: self._store.hold(spec, duration_ns), lambda: self._local.hold(local, duration_ns)
        )

    async def record(self, spec: LimitSpec, grants: Sequence[tuple[int, int]]) -> None:
        await self._store.record(spec, grants)

    async def close(self) -> None:
        await self._store.close()
