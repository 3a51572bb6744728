"""Window limits and grants over several keys, on an injected clock: whatever arrives
when, and however late each granted request reaches the API (up to the margin), no
window of the API ever holds more than N; the Redis script decides like the memory twin."""

from __future__ import annotations

import bisect
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from stepstream.ratelimiter import window
from stepstream.ratelimiter.backends.base import reserve_many
from stepstream.ratelimiter.backends.memory import MemoryBackend
from stepstream.ratelimiter.backends.redis_backend import RedisBackend
from stepstream.ratelimiter.config import LimiterSettings, LimitSpec, Shape, parse_limit
from stepstream.ratelimiter.core import LimiterCore

pytestmark = pytest.mark.process

MS = 1_000_000
S = 1_000 * MS


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000 * S

    def __call__(self) -> int:
        return self.now


def sliding(n: int, w_ms: int, margin_ms: int, at_once: int | None = None) -> LimitSpec:
    table = {"rate": n, "period": f"{w_ms}ms", "margin": f"{margin_ms}ms", "at_once": at_once or n}
    return parse_limit("k", table, "test", 0.0)


def aligned(n: int, w_ms: int, margin_ms: int, phase_ms: int, at_once: int | None = None) -> LimitSpec:
    table = {"rate": n, "period": f"{w_ms}ms", "window": "fixed", "margin": f"{margin_ms}ms"}
    table["at_once"] = at_once or n
    return parse_limit("k", {**table, "phase": f"{phase_ms}ms" if phase_ms else 0}, "test", 0.0)


def worst_arrivals(slots: list[tuple[int, int]], w: int, margin: int) -> int:
    """The most cost any half-open window of `w` can see when each grant arrives
    anywhere in [slot, slot + margin]: the adversary packs a window's worth of grants
    from a span of w + margin, so that is what is counted."""
    slots = sorted(slots)
    times = [t for t, _ in slots]
    worst = 0
    for i, (t, _) in enumerate(slots):
        j = bisect.bisect_left(times, t + w + margin)
        worst = max(worst, sum(c for _, c in slots[i:j]))
    return worst


requests_st = st.lists(
    st.tuples(st.integers(0, 400), st.integers(1, 5), st.integers(0, 3000)), min_size=1, max_size=120
)


@settings(max_examples=60, deadline=None)
@given(
    requests=requests_st,
    n=st.integers(5, 20),
    margin_ms=st.integers(0, 60),
    at_once=st.one_of(st.none(), st.integers(1, 5)),
)
async def test_sliding_window_never_overrun_whatever_the_arrivals(
    requests: list[tuple[int, int, int]], n: int, margin_ms: int, at_once: int | None
) -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock)
    spec = sliding(n, 1000, margin_ms, at_once)
    slots: list[tuple[int, int]] = []
    for gap_ms, cost, max_wait_ms in requests:
        clock.now += gap_ms * MS
        result = await backend.reserve(spec, [(cost, max_wait_ms * MS)])
        if result.waits_ns:
            slots.append((result.epoch_ns + result.waits_ns[0], cost))
        else:
            # Refused: the retry time is exact, a grant there would pass.
            assert result.retry_after_ns is not None and result.retry_after_ns > max_wait_ms * MS
    assert worst_arrivals(slots, 1000 * MS, margin_ms * MS) <= n
    if at_once is not None:
        # Paced: never more than at_once in any at_once/n of the window.
        times = sorted(t for t, _ in slots)
        pace = 1000 * MS * at_once // n
        for t in times:
            assert sum(c for s, c in slots if t <= s < t + pace) <= max(at_once, max(c for _, c in slots))
        return
    # Exact, not merely safe: with nobody waiting, a full window's worth goes at once.
    fresh = MemoryBackend(FakeClock())
    burst = await fresh.reserve(spec, [(1, 0)] * n + [(1, 0)])
    assert len(burst.waits_ns) == n and burst.retry_after_ns == (1000 + margin_ms) * MS + 1


async def test_a_paced_window_spreads_its_grants_and_keeps_its_rate() -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock)
    spec = parse_limit("k", "100 per 1s", "test", 0.04)  # at_once: a tenth, 10 per 100 ms
    result = await backend.reserve(spec, [(1, 2 * S)] * 200)
    waits = result.waits_ns
    assert len(waits) == 200
    assert waits[:10] == [0] * 10 and 99 * MS < waits[10] <= 100 * MS
    # Over the first window 100 go, then a window plus the margin after the first.
    assert max(waits[:100]) < S and waits[100] >= S + 40 * MS


@settings(max_examples=60, deadline=None)
@given(
    requests=requests_st,
    n=st.integers(5, 20),
    margin_ms=st.integers(0, 60),
    phase_ms=st.integers(0, 999),
)
async def test_aligned_fixed_window_never_overrun(
    requests: list[tuple[int, int, int]], n: int, margin_ms: int, phase_ms: int
) -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock)
    spec = aligned(n, 1000, margin_ms, phase_ms)
    slots: list[tuple[int, int]] = []
    for gap_ms, cost, max_wait_ms in requests:
        clock.now += gap_ms * MS
        result = await backend.reserve(spec, [(cost, max_wait_ms * MS)])
        if result.waits_ns:
            slots.append((result.epoch_ns + result.waits_ns[0], cost))
    # A grant may arrive anywhere within the margin on either side (spread and clock
    # error): each API window [k W + phase, (k+1) W + phase) sees at most every grant
    # whose slot lies within a margin of it.
    w, m, phase = 1000 * MS, margin_ms * MS, phase_ms * MS
    for t, _ in slots:
        k = (t - phase) // w
        for kk in (k - 1, k, k + 1):
            lo, hi = kk * w + phase, (kk + 1) * w + phase
            assert sum(c for s, c in slots if lo - m <= s < hi + m) <= n


async def test_aligned_window_lets_a_window_go_at_each_edge() -> None:
    # What a fixed window allows and a sliding one does not: N at the end of one
    # window and N more right after the next one starts.
    clock = FakeClock()
    backend = MemoryBackend(clock)
    spec = aligned(10, 1000, 0, 0)
    now = (await backend.reserve(spec, [])).epoch_ns
    clock.now += (S - now % S) - 5 * MS  # 5 ms before a window edge
    first = await backend.reserve(spec, [(1, 0)] * 11)
    second = await backend.reserve(spec, [(1, 20 * MS)] * 10)
    assert len(first.waits_ns) == 10 and len(second.waits_ns) == 10
    assert all(w <= 6 * MS for w in second.waits_ns)


@settings(max_examples=40, deadline=None)
@given(
    requests=st.lists(
        st.tuples(st.integers(0, 200), st.integers(1, 3), st.integers(50, 3000), st.booleans()),
        min_size=1,
        max_size=80,
    )
)
async def test_several_keys_all_or_nothing_and_each_limit_kept(
    requests: list[tuple[int, int, int, bool]],
) -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock)
    rpm = sliding(10, 1000, 20)
    tpm = parse_limit("t", {"rate": 3000, "period": "1s", "margin": "20ms", "unit": "tokens"}, "test", 0.0)
    gcra_key = parse_limit("g", "20/s burst 4", "test")
    taken: dict[str, list[tuple[int, int]]] = {"k": [], "t": [], "g": []}
    for gap_ms, calls, tokens, with_gcra in requests:
        clock.now += gap_ms * MS
        items = [(rpm, calls), (tpm, tokens)] + ([(gcra_key, 1)] if with_gcra else [])
        result = await reserve_many(backend, items, 2 * S, f"id{len(taken['k'])}")
        if not result.waits_ns:
            continue
        slot = result.epoch_ns + result.waits_ns[0]
        taken["k"].append((slot, calls))
        taken["t"].append((slot, tokens))
        if with_gcra:
            taken["g"].append((slot, 1))
    assert worst_arrivals(taken["k"], S, 20 * MS) <= 10
    assert worst_arrivals(taken["t"], S, 20 * MS) <= 3000
    # GCRA: at most rate x window + burst in any window.
    g = sorted(t for t, _ in taken["g"])
    for i, t in enumerate(g):
        assert bisect.bisect_left(g, t + S // 2) - i <= 20 * 0.5 + 4


async def test_grants_over_several_keys_keep_arrival_order_and_settle() -> None:
    core = LimiterCore(
        LimiterSettings(
            limits={
                "rpm": parse_limit("rpm", "3 per 1s", "t", 0.0),
                "tpm": parse_limit("tpm", {"rate": 1000, "period": "1s", "unit": "tokens"}, "t", 0.0),
            }
        ),
        MemoryBackend(),
    )
    first = await core.acquire_many([("rpm", 1), ("tpm", 600)], 5.0)
    # Too many tokens for this window: the next slot is a window later, for both keys.
    second = await core.acquire_many([("rpm", 1), ("tpm", 600)], 5.0)
    assert first.granted and first.wait_s == 0 and second.granted and second.wait_s > 0.9
    # The estimate was too high: settling the first grant gives 400 back in its place...
    await core.reconcile("tpm", 600, 200, first.grant_id)
    third = await core.acquire_many([("rpm", 1), ("tpm", 200)], 0.0)
    # ...yet nothing goes before a slot already granted (first come, first served).
    assert not third.granted
    spec, state = await core.describe("tpm")
    assert spec.shape is Shape.SLIDING and state.available == 0
    refused = await core.acquire_many([("rpm", 1), ("tpm", 600)], 0.5)
    assert not refused.granted and refused.retry_after_s > 0.5
    with pytest.raises(Exception, match="named twice"):
        await core.acquire_many([("rpm", 1), ("rpm", 1)], 1.0)
    await core.close()


async def test_observed_remaining_consumes_only_what_the_api_lacks() -> None:
    backend = MemoryBackend(FakeClock())
    spec = sliding(50, 1000, 0)
    await backend.reserve(spec, [(1, 0)] * 10)
    # We think 40 are left; the API says 45 (it has not counted some yet): nothing.
    assert (await backend.observe(spec, 45, None))[0] == 0
    # The API says 25: someone else spent 15.
    assert (await backend.observe(spec, 25, 0))[0] == 15
    assert (await backend.peek(spec)).available == 25
    result = await backend.reserve(spec, [(1, 0)] * 30)
    assert len(result.waits_ns) == 25


def test_window_params_round_up_and_span() -> None:
    p = window.WindowParams.from_spec(sliding(5, 1000, 40), 1_000)
    assert (p.limit, p.period, p.margin, p.phase, p.span) == (5, 1_000_000, 40_000, None, 1_040_000)
    q = window.WindowParams.from_spec(aligned(5, 1000, 40, 250), 1_000)
    assert (q.phase, q.span) == (250_000, 1_080_000)
    with pytest.raises(ValueError, match="never fits"):
        window.earliest([], 0, 6, p)


# ---- the Redis script decides like the memory twin --------------------------------


@pytest.fixture
async def redis_backend(redis_server: Any) -> RedisBackend:
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushall()
    await client.aclose()
    return RedisBackend(redis_server.url, timeout_s=1.0)


@pytest.mark.parametrize("shape", ["sliding", "aligned"])
async def test_redis_window_script_decides_like_the_memory_twin(
    redis_backend: RedisBackend, shape: str
) -> None:
    spec = sliding(5, 1000, 30) if shape == "sliding" else aligned(5, 1000, 30, 0)
    requests = [(1, 0), (2, 0), (1, 0), (1, 0), (1, 2 * S), (3, 3 * S)]
    red = await redis_backend.reserve(spec, requests, [f"r{i}" for i in range(len(requests))])
    # The twin on Redis's clock at the decision.
    clock = FakeClock()
    memory = MemoryBackend(clock)
    clock.now += red.epoch_ns - memory._now()
    mem = await memory.reserve(spec, requests)
    assert len(red.waits_ns) == len(mem.waits_ns)
    for a, b in zip(red.waits_ns, mem.waits_ns, strict=True):
        assert abs(a - b) <= 2_000
    # Settle, observe and describe through the script too.
    await redis_backend.adjust(spec, -1, "r1", 2)
    peek = await redis_backend.peek(spec)
    assert peek.available == 0 and peek.full_in_ns > S
    consumed, _ = await redis_backend.observe(spec, 0, None)
    assert consumed == 0  # the window is spoken for already
    many = await reserve_many(redis_backend, [(spec, 1)], 10 * S, "m")
    # Placed after every slot granted before it (absolute times on Redis's clock).
    assert many.waits_ns and many.epoch_ns + many.waits_ns[0] >= red.epoch_ns + max(red.waits_ns)
    await redis_backend.close()


async def test_redis_reserve_many_is_all_or_nothing(redis_backend: RedisBackend) -> None:
    rpm = sliding(2, 1000, 10)
    tpm = parse_limit("t", {"rate": 100, "period": "1s", "unit": "tokens"}, "test", 0.01)
    ok = await reserve_many(redis_backend, [(rpm, 1), (tpm, 90)], 0, "a")
    refused = await reserve_many(redis_backend, [(rpm, 1), (tpm, 20)], 0, "b")
    assert ok.waits_ns == [0] and not refused.waits_ns
    # The refusal took nothing: the request key still has its second slot.
    assert (await redis_backend.peek(rpm)).available == 1
    assert (await redis_backend.peek(tpm)).available == 10
    await redis_backend.close()


async def test_a_caller_woken_past_half_the_margin_takes_a_new_slot() -> None:
    import asyncio
    import time

    from stepstream.ratelimiter.client import LocalLimiter

    limiter = LocalLimiter.from_limits({"k": {"rate": 2, "period": "1s", "at_once": 1}})
    first = await limiter.acquire("k", timeout=5)
    task = asyncio.ensure_future(limiter.acquire("k", timeout=5))
    # Its slot is half a window away: the sidecar hands it out 250 ms ahead
    # (reserve_ahead), and the caller sleeps until it...
    await asyncio.sleep(0.3)
    time.sleep(0.5)  # ...in a stalled process: it wakes 0.3 s after its slot.
    second = await task
    # The late slot went back and a new one was taken: it starts after the stall.
    assert limiter.late_slots == 1
    assert second.granted_at - first.granted_at > 0.75
    await limiter.close()
