"""Grants counted per key (ratelimiter/counters.py) as DescribeLimit reports them: per-second
rates over the last full seconds, totals, and in the core, grants that waited told apart."""

from __future__ import annotations

from stepstream.ratelimiter.backends.memory import MemoryBackend
from stepstream.ratelimiter.config import settings_from_mapping
from stepstream.ratelimiter.core import LimiterCore
from stepstream.ratelimiter.counters import WINDOW_SECONDS, GrantCounter


def test_rates_cover_the_last_full_seconds() -> None:
    counter = GrantCounter()
    for _ in range(30):
        counter.add(False, now=100.2)
    for _ in range(10):
        counter.add(True, now=101.7)
    counter.add(False, now=102.1)  # the second under way: not in the rates yet
    assert counter.rates(now=102.5) == (40 / WINDOW_SECONDS, 10 / WINDOW_SECONDS)
    assert (counter.granted_total, counter.waited_total) == (41, 10)
    # Once second 100 is more than ten full seconds back, it has left the window.
    assert counter.rates(now=110.5) == (41 / WINDOW_SECONDS, 10 / WINDOW_SECONDS)
    assert counter.rates(now=111.5) == (11 / WINDOW_SECONDS, 10 / WINDOW_SECONDS)
    assert counter.rates(now=200.0) == (0.0, 0.0)


async def test_the_core_counts_grants_and_those_that_waited() -> None:
    settings = settings_from_mapping({"limits": {"k": "20/s burst 1", "other": "5/s burst 5"}}, "<test>")
    core = LimiterCore(settings, MemoryBackend())
    try:
        decisions = [await core.acquire("k", 1, max_wait_s=5.0) for _ in range(3)]
        assert all(d.granted for d in decisions)
        assert (await core.acquire_many([("k", 1), ("other", 2)], max_wait_s=5.0)).granted
        _, state = await core.describe("k")
        # Burst 1: the first went at once, each later one had a slot ahead of it.
        assert (state.granted_total, state.waited_total) == (4, 3)
        _, other = await core.describe("other")
        assert other.granted_total == 1
    finally:
        await core.close()
