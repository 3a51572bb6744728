"""Window limits, exact: the API never counts more than N in any of its windows.

A window key's state is a log of grants, each a (time, cost) pair in whole clock
ticks, kept in time order. A request granted at t reaches the API somewhere in
[t, t + margin] (the answer of the RPC, the caller's wake-up, the trip to the API).

- Sliding (and fixed with an unknown phase): a grant at t is allowed when the
  grants in (t - W - margin, t], with it, cost at most N. Two grants W + margin
  apart arrive at least W apart, so any window of W the API counts, wherever it
  starts and whatever its clock's offset from ours, holds at most N.
- Paced (`at_once`): also at most `at_once` in any at_once/N of the window, so a
  window's worth is spread over it instead of granted in one instant, which its
  callers could not all send within the margin.
- Fixed with a known phase (the API's windows are [kW + phase, (k+1)W + phase) on
  the store's clock, give or take the margin): a grant at t may arrive in any
  window within a margin of t, so it counts in the extended windows
  [kW + phase - margin, (k+1)W + phase + margin) that hold t, and each of those
  may hold at most N. This lets N go at the end of one window and N more at the
  start of the next, as the API itself does.

Grants are placed in time order: a new grant is never earlier than the latest
one in the log (the key's line is first come, first served across every
sidecar), so only windows ending at or after it need checking, and the earliest
allowed time is found by walking back from the end. Every function is integer
arithmetic so the Redis script (`backends.redis_scripts`) runs the same formulas.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from stepstream.ratelimiter.config import LimitSpec

Entry = tuple[int, int, str]  # (time, cost, grant id) in ticks and tokens


@dataclasses.dataclass(frozen=True, slots=True)
class WindowParams:
    """A window limit in ticks of `ns_per_tick` nanoseconds."""

    limit: int
    period: int
    margin: int
    # Aligned fixed windows: where windows start, in ticks after multiples of `period`.
    phase: int | None
    # Pacing: at most `pace_limit` in any `pace_span` (0: none).
    pace_limit: int = 0
    pace_span: int = 0

    @classmethod
    def from_spec(cls, spec: LimitSpec, ns_per_tick: int) -> WindowParams:
        def ticks(seconds: float) -> int:
            # Round the window and the margin up: a longer window only grants less.
            return -(-round(seconds * 1_000_000_000) // ns_per_tick)

        phase = None if not spec.aligned else round((spec.phase_s or 0.0) * 1_000_000_000) // ns_per_tick
        pace = spec.at_once if 0 < spec.at_once < spec.rate else 0
        pace_span = ticks(spec.period_s * pace / spec.rate) if pace else 0
        return cls(int(spec.rate), ticks(spec.period_s), ticks(spec.margin_s), phase, pace, pace_span)

    @property
    def span(self) -> int:
        """How far back a grant may still count against a new one."""
        if self.phase is None:
            return self.period + self.margin
        return self.period + 2 * self.margin


def earliest(log: Sequence[Entry], now: int, cost: int, p: WindowParams) -> int:
    """The earliest time, not before now nor the latest grant, at which `cost` fits."""
    if cost > p.limit:
        raise ValueError(f"a cost of {cost} never fits a window of {p.limit}")
    start = max(now, log[-1][0] if log else now)
    if p.pace_limit:
        # Paced: no more than pace_limit in any pace_span (a cost above it waits for
        # the span to be empty, then goes alone).
        start = _earliest_sliding(log, start, cost, p.pace_limit, p.pace_span - 1)
    if p.phase is None:
        return _earliest_sliding(log, start, cost, p.limit, p.period + p.margin)
    return _earliest_aligned(log, start, cost, p)


def _earliest_sliding(log: Sequence[Entry], start: int, cost: int, limit: int, span: int) -> int:
    room = limit - cost
    total = 0
    for at, n, _ in reversed(log):
        if at <= start - span:
            break
        total += n
        if total > room:
            # This grant and every later one hold the window: wait until it leaves.
            # (+1: two grants exactly W apart never share even a closed window.)
            return max(start, at + span + 1)
    return start


def _earliest_aligned(log: Sequence[Entry], start: int, cost: int, p: WindowParams) -> int:
    assert p.phase is not None
    t = start
    while True:
        moved = False
        for lo, hi in _extended_windows(t, p):
            if _sum_between(log, lo, hi) + cost > p.limit:
                t = hi
                moved = True
                break
        if not moved:
            return t


def _extended_windows(t: int, p: WindowParams) -> list[tuple[int, int]]:
    """The API windows, widened by the margin on both sides, that hold time t: [lo, hi)."""
    assert p.phase is not None
    # Window k is [k W + phase - m, (k+1) W + phase + m); it holds t when
    # k W + phase - m <= t < (k+1) W + phase + m.
    k_hi = (t - p.phase + p.margin) // p.period
    out = []
    k = k_hi
    while True:
        lo = k * p.period + p.phase - p.margin
        hi = lo + p.period + 2 * p.margin
        if hi <= t:
            break
        out.append((lo, hi))
        k -= 1
    return out


def _sum_between(log: Sequence[Entry], lo: int, hi: int) -> int:
    total = 0
    for at, n, _ in reversed(log):
        if at < lo:
            break
        if at < hi:
            total += n
    return total


def prune_before(now: int, p: WindowParams) -> int:
    """Grants at or before this time no longer count against any grant from now on."""
    return now - p.span - 1


def used(log: Sequence[Entry], now: int, p: WindowParams) -> int:
    """Tokens that count against a grant made now (the key's view of its window)."""
    if p.phase is None:
        return _sum_between(log, now - p.period - p.margin + 1, now + 1)
    return max((_sum_between(log, lo, hi) for lo, hi in _extended_windows(now, p)), default=0)


def free_at(log: Sequence[Entry], now: int, p: WindowParams) -> int:
    """When the log no longer holds anything back (all of it has left the window)."""
    if not log:
        return now
    return max(now, log[-1][0] + p.span + 1)
