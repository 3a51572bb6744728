"""The in-memory back end: exact GCRA and window state in dicts, for one process.

It is the embedded default (one replica, no other process), the twin of the
Redis scripts (the same integer formulas, in nanoseconds), and the conservative
local budget a sidecar falls back to while Redis is unreachable. Every call runs
on one event loop and never awaits, so a call over several keys is atomic
without a lock.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence

from stepstream.ratelimiter import gcra, window
from stepstream.ratelimiter.backends.base import BatchResult, Peek
from stepstream.ratelimiter.config import LimitSpec
from stepstream.ratelimiter.types import Mode

Clock = Callable[[], int]
_HOLD = "hold"


class MemoryBackend:
    """Not thread-safe on purpose: every call runs on one event loop and never awaits."""

    def __init__(self, clock: Clock = time.monotonic_ns, mode: Mode = Mode.SHARED) -> None:
        self._clock = clock
        # Unix time of the clock's zero, so grants can be stamped on the wall clock
        # (and aligned fixed windows placed on it).
        self._epoch_offset = time.time_ns() - clock()
        self._mode = mode
        self._tat: dict[str, int] = {}
        self._logs: dict[str, list[window.Entry]] = {}
        self._paused_until: dict[str, int] = {}
        self._params: dict[LimitSpec, gcra.Gcra] = {}
        self._windows: dict[LimitSpec, window.WindowParams] = {}
        self._seq = 0

    def _gcra(self, spec: LimitSpec) -> gcra.Gcra:
        params = self._params.get(spec)
        if params is None:
            params = self._params[spec] = gcra.Gcra.from_spec(spec, gcra.NS_PER_TICK_MEMORY)
        return params

    def _window(self, spec: LimitSpec) -> window.WindowParams:
        params = self._windows.get(spec)
        if params is None:
            params = self._windows[spec] = window.WindowParams.from_spec(spec, gcra.NS_PER_TICK_MEMORY)
        return params

    def _now(self) -> int:
        # Window logs are kept on the wall clock's scale, where an API's windows sit.
        return self._clock() + self._epoch_offset

    def _log(self, spec: LimitSpec, now: int) -> list[window.Entry]:
        log = self._logs.setdefault(spec.key, [])
        cut = window.prune_before(now, self._window(spec))
        if log and log[0][0] <= cut:
            del log[: bisect.bisect_right(log, cut, key=lambda e: e[0])]
        return log

    def _name(self) -> str:
        self._seq += 1
        return f"m{self._seq}"

    # ---- reserving ---------------------------------------------------------------

    def _earliest(self, spec: LimitSpec, tokens: int, now: int) -> int:
        if spec.is_window:
            return window.earliest(self._log(spec, now), now, tokens, self._window(spec))
        params = self._gcra(spec)
        return gcra.earliest(self._tat.get(spec.key, 0), now, params.cost(tokens), params.tolerance)

    def _commit(self, spec: LimitSpec, tokens: int, at: int, grant_id: str) -> None:
        if spec.is_window:
            bisect.insort(self._logs.setdefault(spec.key, []), (at, tokens, grant_id), key=lambda e: e[0])
        else:
            cost = self._gcra(spec).cost(tokens)
            self._tat[spec.key] = gcra.commit(self._tat.get(spec.key, 0), at, cost)

    async def reserve(
        self, spec: LimitSpec, requests: Sequence[tuple[int, int]], ids: Sequence[str] = ()
    ) -> BatchResult:
        return self.reserve_now(spec, requests, ids)

    def reserve_now(
        self, spec: LimitSpec, requests: Sequence[tuple[int, int]], ids: Sequence[str] = ()
    ) -> BatchResult:
        now = self._now()
        waits: list[int] = []
        retry: int | None = None
        for i, (n, max_wait_ns) in enumerate(requests):
            at = self._earliest(spec, n, now)
            if at - now > max_wait_ns:
                retry = at - now
                break
            self._commit(spec, n, at, ids[i] if i < len(ids) else self._name())
            waits.append(at - now)
        return BatchResult(waits, retry, now, self._mode)

    async def reserve_set(
        self, specs: Sequence[LimitSpec], requests: Sequence[tuple[Sequence[int], int]], ids: Sequence[str]
    ) -> BatchResult:
        now = self._now()
        waits: list[int] = []
        retry: int | None = None
        for i, (costs, max_wait_ns) in enumerate(requests):
            # Every key is feasible from its own earliest slot on, so the latest of them
            # suits them all; taking all of them in one step is all or nothing.
            at = max(self._earliest(spec, n, now) for spec, n in zip(specs, costs, strict=True))
            if at - now > max_wait_ns:
                retry = at - now
                break
            name = ids[i] if i < len(ids) else self._name()
            for spec, n in zip(specs, costs, strict=True):
                self._commit(spec, n, at, name)
            waits.append(at - now)
        return BatchResult(waits, retry, now, self._mode)

    # ---- corrections ---------------------------------------------------------------

    async def adjust(self, spec: LimitSpec, tokens: int, grant_id: str = "", reserved: int = 0) -> Mode:
        now = self._now()
        if not spec.is_window:
            params = self._gcra(spec)
            delta = params.cost(abs(tokens)) * (1 if tokens > 0 else -1)
            self._tat[spec.key] = gcra.adjust(self._tat.get(spec.key, 0), now, delta)
            return self._mode
        log = self._log(spec, now)
        for i, (at, n, name) in enumerate(log):
            if grant_id and name == grant_id:
                # The grant's own slot now counts what it really cost (or goes, at zero).
                if n + tokens > 0:
                    log[i] = (at, n + tokens, name)
                else:
                    del log[i]
                return self._mode
        if tokens > 0:
            # Spent without a known grant (or one that has left the window): count it now.
            self._commit(spec, tokens, now, self._name())
        return self._mode

    async def observe(self, spec: LimitSpec, remaining: int, reset_after_ns: int | None) -> tuple[int, Mode]:
        now = self._now()
        if not spec.is_window:
            params = self._gcra(spec)
            extra = max(params.available(self._tat.get(spec.key, 0), now) - max(remaining, 0), 0)
            if extra:
                await self.adjust(spec, extra)
            return extra, self._mode
        params_w = self._window(spec)
        log = self._log(spec, now)
        ours = spec.burst - window.used(log, now, params_w) - sum(n for at, n, _ in log if at > now)
        extra = max(ours - max(remaining, 0), 0)
        if extra:
            at = _observed_slot(now, reset_after_ns, params_w)
            bisect.insort(log, (at, extra, self._name()), key=lambda e: e[0])
        return extra, self._mode

    async def pause(self, spec: LimitSpec, duration_ns: int) -> Mode:
        if spec.is_window:
            # A free entry at the end of the pause: grants are placed in time order,
            # so none goes before it.
            self._commit(spec, 0, self._now() + duration_ns, _HOLD)
        else:
            await self.hold(spec, duration_ns)
        now = self._clock()
        self._paused_until[spec.key] = max(self._paused_until.get(spec.key, 0), now + duration_ns)
        return self._mode

    async def hold(self, spec: LimitSpec, duration_ns: int) -> None:
        if spec.is_window:
            self.empty(spec, duration_ns)
            return
        now = self._now()
        params = self._gcra(spec)
        tat = self._tat.get(spec.key, 0)
        self._tat[spec.key] = gcra.pause(tat, now, duration_ns, params.tolerance, params.cost(1))

    async def peek(self, spec: LimitSpec) -> Peek:
        now = self._now()
        paused = max(self._paused_until.get(spec.key, 0) - self._clock(), 0)
        if spec.is_window:
            params_w = self._window(spec)
            log = self._log(spec, now)
            ahead = bool(log) and log[-1][0] > now
            available = 0 if ahead else spec.burst - window.used(log, now, params_w)
            return Peek(max(available, 0), window.free_at(log, now, params_w) - now, paused, self._mode)
        params = self._gcra(spec)
        tat = self._tat.get(spec.key, 0)
        return Peek(params.available(tat, now), max(tat - now, 0), paused, self._mode)

    def empty(self, spec: LimitSpec, after_ns: int = 0) -> None:
        """Start the key empty `after_ns` from now: no grant before, then no burst first."""
        now = self._now()
        if spec.is_window:
            # A full window at that time: what other sidecars granted into it is unknown.
            self._commit(spec, spec.burst, now + after_ns, _HOLD)
            return
        params = self._gcra(spec)
        self._tat[spec.key] = max(self._tat.get(spec.key, 0), now + after_ns + params.tolerance)

    async def record(self, spec: LimitSpec, grants: Sequence[tuple[int, int]]) -> None:
        now = self._now()
        for offset, tokens in grants:
            self._commit(spec, tokens, now + offset, self._name())

    def granted(self, spec: LimitSpec) -> list[tuple[int, int]]:
        """A window key's grants that still count, as (ns from now, tokens) each
        (markers of pauses and of outages left out)."""
        now = self._now()
        return [(at - now, n) for at, n, name in self._log(spec, now) if name != _HOLD and n > 0]

    def committed_ns(self, spec: LimitSpec) -> int:
        """How far ahead of now the key's last granted slot starts (0: none ahead)."""
        now = self._now()
        if spec.is_window:
            log = self._logs.get(spec.key)
            return max(log[-1][0] - now, 0) if log else 0
        params = self._gcra(spec)
        return max(self._tat.get(spec.key, 0) - params.tolerance - now, 0)

    async def close(self) -> None:
        self._tat.clear()
        self._logs.clear()


def _observed_slot(now: int, reset_after_ns: int | None, p: window.WindowParams) -> int:
    """Where to log tokens the API says someone else spent: they count until the
    API's reset when it gave one, else for a whole window from now (the safe side)."""
    if reset_after_ns is None:
        return now
    return min(now, max(now + reset_after_ns - p.span, now - p.span + 1))
