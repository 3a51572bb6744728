"""The limits a mock endpoint enforces, in the three shapes real APIs state them.

- `Limit(rate, burst)`: GCRA, `rate` per second with bursts of `burst` (a token
  bucket), decided by the project's own algorithm (`stepstream.ratelimiter.gcra`)
  so the mock and the limiter never disagree about what GCRA means.
- `Window(limit, window_s)`: a sliding window, as "50 requests per second" is
  usually enforced: never more than `limit` in any `window_s` seconds.
- `Window(limit, window_s, fixed=True, offset_s=...)`: a fixed window counter
  reset on the wall clock's `window_s` boundaries ("500 per minute, reset on the
  minute"), shifted by `offset_s` to play an API whose clock is not ours.

Each shape gives an exact decision, the exact wait before a refused request
could pass, what is left, and when the budget is whole again: the 429s and the
rate-limit headers the mock answers with.
"""

from __future__ import annotations

import collections
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

from stepstream.ratelimiter.gcra import Gcra, reserve

NS = 1_000_000_000


def _num(value: float) -> str:
    """A number as the spec strings write it: plain decimals, no exponent, no trailing zeros."""
    return f"{value:.9f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Decision:
    """The outcome of one request: allowed, or refused with the wait before a retry can pass."""

    allowed: bool
    retry_after_s: float = 0.0


@dataclass(frozen=True)
class Limit:
    """GCRA: `rate` per second on average, at most `burst` at once; a rate of 0 means unlimited."""

    rate: float
    burst: int

    @classmethod
    def per_second(cls, rate: float, burst: int | None = None) -> Limit:
        # Default burst: a fifth of a second's worth, as public APIs tolerate short bunches.
        return cls(rate, burst if burst is not None else max(1, math.ceil(rate / 5)))

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    @property
    def per_second_rate(self) -> float:
        return max(self.rate, 0.0)

    @property
    def shape(self) -> str:
        return "gcra"

    def spec(self) -> str:
        return "unlimited" if self.unlimited else f"{_num(self.rate)}/s burst {self.burst}"

    def most_in(self, span_s: float) -> float:
        """The most this limit admits in any half-open interval of `span_s` seconds."""
        return self.rate * span_s + self.burst


@dataclass(frozen=True)
class Window:
    """At most `limit` in any `window_s` seconds (sliding), or per wall-clock window (fixed)."""

    limit: int
    window_s: float
    fixed: bool = False
    # Fixed windows only: the API's windows start when (wall clock + offset_s) is a multiple of window_s.
    offset_s: float = 0.0

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window_s <= 0:
            raise ValueError(
                f"a window limit needs limit >= 1 and window > 0, got {self.limit} per {self.window_s}s"
            )
        if self.offset_s and not self.fixed:
            raise ValueError("offset applies to fixed windows only")

    @property
    def unlimited(self) -> bool:
        return False

    @property
    def per_second_rate(self) -> float:
        return self.limit / self.window_s

    @property
    def shape(self) -> str:
        return "fixed" if self.fixed else "sliding"

    def spec(self) -> str:
        text = f"{self.limit} per {_num(self.window_s)}s"
        if self.fixed:
            text += " fixed" + (f" offset {_num(self.offset_s)}s" if self.offset_s else "")
        return text

    def most_in(self, span_s: float) -> float:
        """The most this limit admits in any half-open interval of `span_s` seconds."""
        # Any span longer than 0 can hold one full window's worth; the epsilon keeps 10.0 / 1.0 at 10.
        windows = max(1, math.ceil(span_s / self.window_s - 1e-9))
        # A fixed-window counter can fill the window an interval starts in and each one it reaches.
        return self.limit * (windows + 1 if self.fixed else windows)


Shape = Limit | Window
UNLIMITED = Limit(0, 1)

_DURATION = re.compile(r"^(\d*\.?\d*)\s*(ms|s|sec|second|seconds|m|min|minute|minutes|h|hour|hours)$")
_UNIT_S = {"ms": 0.001, "s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "minute": 60}
_UNIT_S |= {"minutes": 60, "h": 3600, "hour": 3600, "hours": 3600}
_SPEC = re.compile(
    r"^(?P<n>\d+(?:\.\d+)?)\s*(?:/|per)\s*(?P<w>[\d.]*\s*[a-z]+)"
    r"(?:\s+burst\s+(?P<burst>\d+))?(?:\s+(?P<kind>sliding|fixed))?(?:\s+offset\s+(?P<offset>-?[\d.]+\s*[a-z]+))?$"
)
_SPEC_HELP = (
    "use 'N per W' (sliding window, e.g. '50 per 1s'), 'N per W fixed [offset Xs]' "
    "(fixed window, e.g. '500 per 1m fixed'), 'R/s burst B' (GCRA) or 'unlimited'"
)


def parse_duration(text: str) -> float:
    """`1s`, `250ms`, `1m`, `s` (one second), `1.5 h` -> seconds."""
    match = _DURATION.match(text.strip().lower().lstrip("-"))
    if not match:
        raise ValueError(f"bad duration {text!r} (use e.g. 1s, 250ms, 1m)")
    number = float(match.group(1)) if match.group(1) else 1.0
    seconds = number * _UNIT_S[match.group(2)]
    return -seconds if text.strip().startswith("-") else seconds


def parse_shape(text: str) -> Shape:
    """One limit as a short string; see _SPEC_HELP for the forms."""
    cleaned = " ".join(text.strip().lower().split())
    if cleaned in ("0", "unlimited", "none"):
        return UNLIMITED
    match = _SPEC.match(cleaned)
    if not match:
        raise ValueError(f"bad limit {text!r}: {_SPEC_HELP}")
    n, window_s = float(match.group("n")), parse_duration(match.group("w"))
    if window_s <= 0:
        raise ValueError(f"bad limit {text!r}: the window must be longer than 0")
    if match.group("burst"):
        if match.group("kind") or match.group("offset"):
            raise ValueError(f"bad limit {text!r}: a burst makes it GCRA, which has no windows")
        return Limit(n / window_s, int(match.group("burst")))
    if n != int(n) or n < 1:
        raise ValueError(f"bad limit {text!r}: a window limit counts whole requests or tokens (N >= 1)")
    fixed = match.group("kind") == "fixed"
    offset = parse_duration(match.group("offset")) if match.group("offset") else 0.0
    if offset and not fixed:
        raise ValueError(f"bad limit {text!r}: an offset applies to fixed windows only")
    return Window(int(n), window_s, fixed=fixed, offset_s=offset)


class Counter(Protocol):
    """The live state of one limit on one endpoint."""

    @property
    def shape(self) -> Shape: ...

    def check(self, cost: int) -> Decision: ...
    def take(self, cost: int) -> None: ...
    def remaining(self) -> int: ...
    def reset_s(self) -> float: ...


class GcraCounter:
    """GCRA on the project's integer-tick algorithm, in nanoseconds of the monotonic clock."""

    def __init__(self, shape: Limit, clock: Callable[[], float] = time.monotonic) -> None:
        self.shape = shape
        self._clock = clock
        self._gcra = Gcra(interval=Fraction(NS) / Fraction(str(shape.rate)), burst=shape.burst)
        self._tat = 0

    def _now(self) -> int:
        return int(self._clock() * NS)

    def check(self, cost: int) -> Decision:
        g, now = self._gcra, self._now()
        if cost > g.burst:
            return Decision(False, math.inf)
        decision = reserve(self._tat, now, g.cost(cost), g.tolerance, max_wait=0)
        return Decision(decision.granted, decision.retry_after / NS)

    def take(self, cost: int) -> None:
        g = self._gcra
        self._tat = max(self._tat, self._now()) + g.cost(cost)

    def remaining(self) -> int:
        return self._gcra.available(self._tat, self._now())

    def reset_s(self) -> float:
        return max(self._tat - self._now(), 0) / NS


class SlidingCounter:
    """Every admission of the last window, oldest first: exact for any window and cost."""

    def __init__(self, shape: Window, clock: Callable[[], float] = time.monotonic) -> None:
        self.shape = shape
        self._clock = clock
        self._log: collections.deque[tuple[float, int]] = collections.deque()
        self._used = 0

    def _evict(self) -> float:
        now = self._clock()
        # The window is (now - W, now]: an admission leaves it exactly W seconds later.
        while self._log and self._log[0][0] <= now - self.shape.window_s:
            self._used -= self._log.popleft()[1]
        return now

    def check(self, cost: int) -> Decision:
        now = self._evict()
        limit = self.shape.limit
        if cost > limit:
            return Decision(False, math.inf)
        if self._used + cost <= limit:
            return Decision(True)
        freed = 0
        for at, spent in self._log:
            freed += spent
            if self._used - freed + cost <= limit:
                return Decision(False, at + self.shape.window_s - now)
        raise AssertionError("unreachable: the whole log frees the whole limit")

    def take(self, cost: int) -> None:
        self._log.append((self._evict(), cost))
        self._used += cost

    def remaining(self) -> int:
        self._evict()
        return self.shape.limit - self._used

    def reset_s(self) -> float:
        now = self._evict()
        return self._log[-1][0] + self.shape.window_s - now if self._log else 0.0


class FixedCounter:
    """A counter per wall-clock window, reset at each boundary of the (offset) clock."""

    def __init__(self, shape: Window, clock: Callable[[], float] = time.time) -> None:
        self.shape = shape
        self._clock = clock
        self._window = -1
        self._used = 0

    def _roll(self) -> float:
        at = self._clock() + self.shape.offset_s
        window = math.floor(at / self.shape.window_s)
        if window != self._window:
            self._window, self._used = window, 0
        return at

    def check(self, cost: int) -> Decision:
        at = self._roll()
        if cost > self.shape.limit:
            return Decision(False, math.inf)
        if self._used + cost <= self.shape.limit:
            return Decision(True)
        return Decision(False, (self._window + 1) * self.shape.window_s - at)

    def take(self, cost: int) -> None:
        self._roll()
        self._used += cost

    def remaining(self) -> int:
        self._roll()
        return self.shape.limit - self._used

    def reset_s(self) -> float:
        at = self._roll()
        return (self._window + 1) * self.shape.window_s - at if self._used else 0.0


class Unlimited:
    shape: Shape = UNLIMITED

    def check(self, cost: int) -> Decision:
        return Decision(True)

    def take(self, cost: int) -> None:
        pass

    def remaining(self) -> int:
        return 0

    def reset_s(self) -> float:
        return 0.0


def counter(shape: Shape, clock: Callable[[], float] | None = None) -> Counter:
    """The live state for `shape`; `clock` (seconds) replaces the real one in tests."""
    if isinstance(shape, Limit):
        if shape.unlimited:
            return Unlimited()
        return GcraCounter(shape, clock or time.monotonic)
    if shape.fixed:
        return FixedCounter(shape, clock or time.time)
    return SlidingCounter(shape, clock or time.monotonic)
