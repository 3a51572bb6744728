"""The in-memory back end: exact GCRA state in a dict, for one process.

It is the embedded default (one replica, no other process), the twin of the
Redis script (the same integer formulas, in nanoseconds), and the conservative
local budget a sidecar falls back to while Redis is unreachable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from stepstream.ratelimiter import gcra
from stepstream.ratelimiter.backends.base import BatchResult, Peek
from stepstream.ratelimiter.config import LimitSpec
from stepstream.ratelimiter.types import Mode

Clock = Callable[[], int]


class MemoryBackend:
    """Not thread-safe on purpose: every call runs on one event loop and never awaits."""

    def __init__(self, clock: Clock = time.monotonic_ns, mode: Mode = Mode.SHARED) -> None:
        self._clock = clock
        # Unix time of the clock's zero, so grants can be stamped on the wall clock.
        self._epoch_offset = time.time_ns() - clock()
        self._mode = mode
        self._tat: dict[str, int] = {}
        self._paused_until: dict[str, int] = {}
        self._params: dict[LimitSpec, gcra.Gcra] = {}

    def _gcra(self, spec: LimitSpec) -> gcra.Gcra:
        params = self._params.get(spec)
        if params is None:
            params = self._params[spec] = gcra.Gcra.from_spec(spec, gcra.NS_PER_TICK_MEMORY)
        return params

    async def reserve(self, spec: LimitSpec, requests: Sequence[tuple[int, int]]) -> BatchResult:
        return self.reserve_now(spec, requests)

    def reserve_now(self, spec: LimitSpec, requests: Sequence[tuple[int, int]]) -> BatchResult:
        params = self._gcra(spec)
        now = self._clock()
        tat = self._tat.get(spec.key, 0)
        tolerance = params.tolerance
        waits: list[int] = []
        retry: int | None = None
        for n, max_wait_ns in requests:
            decision = gcra.reserve(tat, now, params.cost(n), tolerance, max_wait_ns)
            if not decision.granted:
                retry = decision.retry_after
                break
            tat = decision.tat
            waits.append(decision.wait)
        if waits:
            self._tat[spec.key] = tat
        return BatchResult(waits, retry, now + self._epoch_offset, self._mode)

    async def adjust(self, spec: LimitSpec, tokens: int) -> Mode:
        params = self._gcra(spec)
        delta = params.cost(abs(tokens)) * (1 if tokens > 0 else -1)
        self._tat[spec.key] = gcra.adjust(self._tat.get(spec.key, 0), self._clock(), delta)
        return self._mode

    async def pause(self, spec: LimitSpec, duration_ns: int) -> Mode:
        params = self._gcra(spec)
        now = self._clock()
        tat = self._tat.get(spec.key, 0)
        self._tat[spec.key] = gcra.pause(tat, now, duration_ns, params.tolerance, params.cost(1))
        self._paused_until[spec.key] = max(self._paused_until.get(spec.key, 0), now + duration_ns)
        return self._mode

    async def peek(self, spec: LimitSpec) -> Peek:
        params = self._gcra(spec)
        now = self._clock()
        tat = self._tat.get(spec.key, 0)
        paused = max(self._paused_until.get(spec.key, 0) - now, 0)
        return Peek(params.available(tat, now), max(tat - now, 0), paused, self._mode)

    async def hold(self, spec: LimitSpec, duration_ns: int) -> None:
        params = self._gcra(spec)
        tat = self._tat.get(spec.key, 0)
        self._tat[spec.key] = gcra.pause(tat, self._clock(), duration_ns, params.tolerance, params.cost(1))

    def empty(self, spec: LimitSpec, after_ns: int = 0) -> None:
        """Start the key's bucket empty `after_ns` from now: no grant before, then
        tokens one interval apart, with no burst first."""
        params = self._gcra(spec)
        now = self._clock()
        self._tat[spec.key] = max(self._tat.get(spec.key, 0), now + after_ns + params.tolerance)

    def committed_ns(self, spec: LimitSpec) -> int:
        """How far ahead of now the key's last granted slot starts (0: none ahead)."""
        params = self._gcra(spec)
        return max(self._tat.get(spec.key, 0) - params.tolerance - self._clock(), 0)

    async def close(self) -> None:
        self._tat.clear()
