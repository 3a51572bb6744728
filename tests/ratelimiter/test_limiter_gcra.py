"""The algorithm on an injected clock, and its two back ends (memory, real Redis) decide alike."""

from __future__ import annotations

import bisect
import random
from typing import Any

import pytest
import redis.asyncio as aioredis

from stepstream.ratelimiter import gcra
from stepstream.ratelimiter.backends.memory import MemoryBackend
from stepstream.ratelimiter.backends.redis_backend import RedisBackend
from stepstream.ratelimiter.config import LimitSpec

pytestmark = pytest.mark.process

S = 1_000_000_000
SPEC = LimitSpec("k", rate=100, period_s=1.0, burst=10)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000 * S

    def __call__(self) -> int:
        return self.now


def test_costs_are_exact_and_round_up() -> None:
    g = gcra.Gcra.from_spec(LimitSpec("k", rate=3, period_s=1.0, burst=2), 1)
    assert g.cost(3) == S  # three tokens: exactly one second
    assert g.cost(1) == 333_333_334  # rounded up: never more than the rate
    assert g.tolerance == g.cost(2)
    tokens = gcra.Gcra.from_spec(LimitSpec("t", rate=90000, period_s=60.0, burst=9000), 1000)
    assert tokens.cost(90000) == 60_000_000  # µs ticks: a minute's worth is a minute


def test_full_bucket_then_one_interval_apart() -> None:
    g = gcra.Gcra.from_spec(SPEC, 1)
    tat, now = 0, 5 * S
    for _ in range(10):
        r = gcra.reserve(tat, now, g.cost(1), g.tolerance, 0)
        assert r.granted and r.wait == 0
        tat = r.tat
    refused = gcra.reserve(tat, now, g.cost(1), g.tolerance, 0)
    assert not refused.granted and refused.retry_after == S // 100
    reserved = gcra.reserve(tat, now, g.cost(1), g.tolerance, S)
    assert reserved.granted and reserved.wait == S // 100
    assert g.available(reserved.tat, now) == 0
    assert g.available(reserved.tat, now + S) == 10


def test_pause_and_adjust() -> None:
    g = gcra.Gcra.from_spec(SPEC, 1)
    now = 5 * S
    tat = gcra.pause(0, now, 2 * S, g.tolerance, g.cost(1))
    r = gcra.reserve(tat, now, g.cost(1), g.tolerance, 10 * S)
    assert r.wait == 2 * S  # nothing before the pause ends ...
    r2 = gcra.reserve(r.tat, now, g.cost(1), g.tolerance, 10 * S)
    assert r2.wait == 2 * S + S // 100  # ... and no burst right after it
    assert gcra.adjust(r2.tat, now, -g.cost(1)) == r.tat  # a refund moves the TAT back
    assert gcra.adjust(now - S, now, -g.cost(5)) == now - S  # never fuller than full
    assert gcra.adjust(0, now, g.cost(20)) == now + g.cost(20)  # debt is charged past the burst


async def test_grants_in_any_window_stay_within_rate_times_window_plus_burst() -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock)
    rng = random.Random(7)
    granted: list[int] = []
    for _ in range(20_000):
        clock.now += rng.randrange(0, S // 50)
        n = rng.choice((1, 1, 1, 2, 5))
        result = await backend.reserve(SPEC, [(n, rng.choice((0, S // 10)))])
        for wait in result.waits_ns:
            granted.extend([clock.now + wait] * n)
    granted.sort()
    duration = (granted[-1] - granted[0]) / S
    for window in (S // 10, S, 5 * S):
        worst = max(bisect.bisect_left(granted, t + window) - i for i, t in enumerate(granted))
        assert worst <= SPEC.rate * window / S + SPEC.burst
    # Saturated the whole time: the budget is used, not just respected.
    assert len(granted) >= SPEC.rate * duration * 0.99


async def test_a_batch_stops_at_the_first_request_that_does_not_fit() -> None:
    backend = MemoryBackend(FakeClock())
    result = await backend.reserve(SPEC, [(5, 0), (5, 0), (1, 0), (1, S)])
    assert result.waits_ns == [0, 0]
    assert result.retry_after_ns == S // 100


@pytest.fixture
async def redis_backend(redis_server: Any) -> RedisBackend:
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushall()
    await client.aclose()
    return RedisBackend(redis_server.url, timeout_s=1.0)


async def test_redis_script_decides_like_the_memory_twin(redis_backend: RedisBackend) -> None:
    clock = FakeClock()
    memory = MemoryBackend(clock)
    spec = LimitSpec("twin", rate=100, period_s=1.0, burst=10)
    requests = [(1, 0)] * 10 + [(1, 0), (3, S), (2, S // 100)]
    red = await redis_backend.reserve(spec, requests)
    mem = await memory.reserve(spec, requests)
    assert len(red.waits_ns) == len(mem.waits_ns) == 10
    assert red.retry_after_ns == mem.retry_after_ns
    batch = [(1, S), (3, S), (2, S // 100)]
    red2 = await redis_backend.reserve(spec, batch)
    # The twin's clock moves as far as Redis's did between the two calls.
    clock.now += red2.epoch_ns - red.epoch_ns
    mem2 = await memory.reserve(spec, batch)
    assert len(red2.waits_ns) == len(mem2.waits_ns) == 2
    # Equal to the microsecond Redis counts in.
    for a, b in zip(red2.waits_ns, mem2.waits_ns, strict=True):
        assert abs(a - b) <= 1_000
    assert red2.retry_after_ns is not None and mem2.retry_after_ns is not None
    assert abs(red2.retry_after_ns - mem2.retry_after_ns) <= 1_000
    await redis_backend.close()


async def test_redis_pause_refund_peek_and_expiry(redis_backend: RedisBackend) -> None:
    spec = LimitSpec("p", rate=10, period_s=1.0, burst=2)
    await redis_backend.pause(spec, 2 * S)
    peek = await redis_backend.peek(spec)
    assert peek.available == 0 and 1.9 * S < peek.paused_for_ns <= 2.01 * S
    result = await redis_backend.reserve(spec, [(1, 5 * S)])
    assert 1.9 * S < result.waits_ns[0] <= 2 * S
    # The TAT key lives only while the bucket is not full, so idle keys vanish.
    ttl = await redis_backend.client.pttl("stepstream:rl:{p}")
    assert 2_000 < ttl <= 3_300
    refund = LimitSpec("r", rate=10, period_s=1.0, burst=2)
    assert len((await redis_backend.reserve(refund, [(2, 0)])).waits_ns) == 1
    assert (await redis_backend.peek(refund)).available == 0
    await redis_backend.adjust(refund, -2)
    assert (await redis_backend.peek(refund)).available == 2
    await redis_backend.adjust(refund, 5)  # debt
    assert (await redis_backend.peek(refund)).full_in_ns > 0.4 * S
    await redis_backend.close()


async def test_redis_restart_forgets_scripts_but_not_how_to_load_them(redis_server: Any) -> None:
    backend = RedisBackend(redis_server.url, timeout_s=1.0)
    spec = LimitSpec("restart", rate=10, period_s=1.0, burst=1)
    await backend.reserve(spec, [(1, 0)])
    client = aioredis.Redis.from_url(redis_server.url)
    await client.script_flush()
    await client.aclose()
    result = await backend.reserve(spec, [(1, 0)])
    assert result.waits_ns == [] and result.retry_after_ns
    await backend.close()
