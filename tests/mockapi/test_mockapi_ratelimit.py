"""GCRA decisions on a simulated clock: exact counts, exact waits, no sleeping."""

from __future__ import annotations

import pytest

from stepstream.mockapi.ratelimit import Gcra


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refusal_with_the_exact_wait() -> None:
    clock = Clock()
    limiter = Gcra(rate=10, burst=3, clock=clock)
    assert [limiter.acquire().allowed for _ in range(3)] == [True, True, True]
    refused = limiter.acquire()
    assert not refused.allowed
    assert refused.retry_after_s == pytest.approx(0.1)
    clock.now += refused.retry_after_s
    assert limiter.acquire().allowed
    assert not limiter.acquire().allowed


def test_long_run_admits_burst_plus_rate_times_duration() -> None:
    clock = Clock()
    limiter = Gcra(rate=50, burst=5, clock=clock)
    allowed = 0
    for ms in range(10_000):  # one request per simulated millisecond, t = 0 .. 9.999 s
        clock.now = 100.0 + ms / 1000
        allowed += limiter.acquire().allowed
    # The full bucket, then one token per 20 ms for the 9.999 s that follow.
    assert allowed == 5 + 499


def test_refusals_do_not_consume_tokens() -> None:
    clock = Clock()
    limiter = Gcra(rate=1, burst=1, clock=clock)
    assert limiter.acquire().allowed
    for _ in range(100):
        assert not limiter.acquire().allowed
    clock.now += 1.0
    assert limiter.acquire().allowed


def test_zero_rate_is_unlimited_and_bad_burst_is_rejected() -> None:
    limiter = Gcra(rate=0, burst=1)
    assert all(limiter.acquire().allowed for _ in range(1000))
    with pytest.raises(ValueError):
        Gcra(rate=1, burst=0)
