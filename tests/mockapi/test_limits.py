"""The three limit shapes on a simulated clock: exact counts, exact waits, no sleeping."""

from __future__ import annotations

import math
import random

import pytest

from stepstream.mockapi.limits import (
    UNLIMITED,
    FixedCounter,
    GcraCounter,
    Limit,
    SlidingCounter,
    Window,
    counter,
    parse_duration,
    parse_shape,
)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def admit(live: GcraCounter | SlidingCounter | FixedCounter, cost: int = 1) -> bool:
    decision = live.check(cost)
    if decision.allowed:
        live.take(cost)
    return decision.allowed


def test_gcra_burst_then_refusal_with_the_exact_wait() -> None:
    clock = Clock()
    live = GcraCounter(Limit(rate=10, burst=3), clock)
    assert [admit(live) for _ in range(3)] == [True, True, True]
    refused = live.check(1)
    assert not refused.allowed
    assert refused.retry_after_s == pytest.approx(0.1)
    clock.now += refused.retry_after_s
    assert admit(live)
    assert not admit(live)


def test_gcra_long_run_admits_burst_plus_rate_times_duration() -> None:
    clock = Clock()
    live = GcraCounter(Limit(rate=50, burst=5), clock)
    allowed = 0
    for ms in range(10_000):  # one request per simulated millisecond, t = 0 .. 9.999 s
        clock.now = 1000.0 + ms / 1000
        allowed += admit(live)
    # The full bucket, then one token per 20 ms for the 9.999 s that follow.
    assert allowed == 5 + 499


def test_gcra_refusals_take_nothing_and_headers_state() -> None:
    clock = Clock()
    live = GcraCounter(Limit(rate=1, burst=2), clock)
    assert live.remaining() == 2 and live.reset_s() == 0
    assert admit(live)
    assert live.remaining() == 1
    assert live.reset_s() == pytest.approx(1.0)
    assert admit(live)
    for _ in range(50):
        assert not admit(live)
    clock.now += 1.0
    assert admit(live)
    assert not live.check(3).allowed and math.isinf(live.check(3).retry_after_s)


def test_sliding_window_never_admits_more_than_n_in_any_window() -> None:
    clock = Clock()
    shape = Window(5, 1.0)
    live = SlidingCounter(shape, clock)
    rng = random.Random(7)
    admitted: list[float] = []
    for _ in range(3000):
        clock.now += rng.expovariate(40)  # 40/s of demand against 5/s
        if admit(live):
            admitted.append(clock.now)
    # Every window (t - 1, t] ending at an admission holds at most 5.
    for i, t in enumerate(admitted):
        assert sum(1 for u in admitted[: i + 1] if u > t - 1.0) <= 5
    # And the limiter is not merely strict: over the run it admitted nearly the whole budget.
    span = admitted[-1] - admitted[0]
    assert len(admitted) >= 5 * math.floor(span) * 0.95


def test_sliding_window_gives_the_exact_wait_for_a_cost() -> None:
    clock = Clock(0.0)
    live = SlidingCounter(Window(10, 1.0), clock)
    for t, cost in ((0.0, 4), (0.3, 3), (0.6, 3)):
        clock.now = t
        assert admit(live, cost)
    clock.now = 0.7
    assert live.remaining() == 0
    assert live.reset_s() == pytest.approx(0.9)  # the newest leaves at 1.6
    # 5 tokens need the first two admissions (4 + 3) to leave: at 1.3, 0.6 from now.
    refused = live.check(5)
    assert not refused.allowed and refused.retry_after_s == pytest.approx(0.6)
    clock.now = 1.0  # exactly W after the first: it has left (0.0, 1.0] counts from 0.0 exclusive
    assert live.remaining() == 4
    clock.now = 1.3
    assert admit(live, 5)
    assert not live.check(11).allowed and math.isinf(live.check(11).retry_after_s)


def test_fixed_window_resets_on_the_offset_clock() -> None:
    clock = Clock(100.0)  # a whole-second boundary of our clock
    live = FixedCounter(Window(3, 1.0, fixed=True, offset_s=0.25), clock)
    # The API's clock reads 100.25: its window ends when ours reads 100.75.
    assert [admit(live) for _ in range(4)] == [True, True, True, False]
    refused = live.check(1)
    assert refused.retry_after_s == pytest.approx(0.75)
    assert live.reset_s() == pytest.approx(0.75)
    clock.now = 100.7499
    assert not admit(live)
    clock.now = 100.75
    assert live.remaining() == 3
    # Across the boundary a fixed window admits 2N in a short span: the shape real APIs have.
    assert [admit(live) for _ in range(3)] == [True, True, True]


def test_parse_shape_reads_the_forms_apis_state() -> None:
    assert parse_shape("50 per 1s") == Window(50, 1.0)
    assert parse_shape("50/s") == Window(50, 1.0)
    assert parse_shape("500 per minute fixed") == Window(500, 60.0, fixed=True)
    assert parse_shape("500 per 1m fixed offset -0.5s") == Window(500, 60.0, fixed=True, offset_s=-0.5)
    assert parse_shape("100 per 1m sliding") == Window(100, 60.0)
    assert parse_shape("20/s burst 5") == Limit(20.0, 5)
    assert parse_shape("1 per 3s burst 1") == Limit(1 / 3, 1)
    assert parse_shape("unlimited") == UNLIMITED
    for shape in (Window(7, 0.25, fixed=True, offset_s=0.125), Limit(48.5, 5), Window(90000, 60.0)):
        assert parse_shape(shape.spec()) == shape
    assert parse_duration("250ms") == 0.25 and parse_duration("h") == 3600


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("50 per", "bad limit"),
        ("fifty per 1s", "bad limit"),
        ("50 per 0s", "longer than 0"),
        ("2.5 per 1s", "whole"),
        ("50 per 1s offset 1s", "fixed windows only"),
        ("50/s burst 5 fixed", "GCRA"),
        ("50 per 1 fortnight", "bad"),
    ],
)
def test_parse_shape_refuses_bad_limits_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_shape(text)


def test_most_in_is_the_bound_each_shape_guarantees() -> None:
    assert Window(50, 1.0).most_in(10.0) == 500
    assert Window(50, 1.0).most_in(2.5) == 150
    assert Window(50, 1.0, fixed=True).most_in(10.0) == 550  # an unaligned span touches 11 windows
    assert Limit(20, 5).most_in(10.0) == 205
    assert Window(3, 3600.0).most_in(1e-6) == 3  # one instant can hold a whole window's worth


def test_counter_picks_the_shape_and_unlimited_admits_everything() -> None:
    assert isinstance(counter(Window(1, 1.0)), SlidingCounter)
    assert isinstance(counter(Window(1, 1.0, fixed=True)), FixedCounter)
    assert isinstance(counter(Limit(1, 1)), GcraCounter)
    free = counter(UNLIMITED)
    assert all(free.check(10**6).allowed for _ in range(100))
