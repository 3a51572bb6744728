"""An exact per-endpoint rate limit (GCRA), so the mock API refuses like a real one.

GCRA (the generic cell rate algorithm) is a token bucket kept as one number, the
theoretical arrival time (TAT) of the next request: it is exact at any rate,
needs no background refill, and gives the precise wait for a refused request,
which becomes the Retry-After the mock API answers with.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    """The outcome of one request: allowed, or refused with the wait before a retry can pass."""

    allowed: bool
    retry_after_s: float = 0.0


class Gcra:
    """`rate` requests per second on average, at most `burst` at once.

    A rate of 0 (or less) means no limit. Not thread-safe on purpose: the mock API
    runs on one event loop, and a decision never awaits, so no lock is needed.
    """

    def __init__(self, rate: float, burst: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tat = 0.0

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def acquire(self) -> Decision:
        """Take one token now if the bucket has one; never waits."""
        if self.unlimited:
            return Decision(True)
        now = self._clock()
        interval = 1.0 / self.rate
        # A bucket of `burst` tokens lets the TAT run ahead of now by (burst - 1) intervals.
        tolerance = (self.burst - 1) * interval
        tat = max(self._tat, now)
        ahead = tat - now
        # The epsilon keeps float sums of intervals from refusing the last token of a burst.
        if ahead > tolerance + 1e-9:
            return Decision(False, ahead - tolerance)
        self._tat = tat + interval
        return Decision(True)
