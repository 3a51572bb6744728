"""The core in-process: FIFO, priorities, deadlines, leases, reconcile, 429 pauses, errors."""

from __future__ import annotations

import asyncio
import time

import pytest

from stepstream.ratelimiter.backends.memory import MemoryBackend
from stepstream.ratelimiter.config import settings_from_mapping
from stepstream.ratelimiter.core import LimiterCore
from stepstream.ratelimiter.errors import InvalidRequest, TooManyWaiters, UnknownKey
from stepstream.ratelimiter.types import Decision, Lease, Priority


def core_of(limits: dict[str, str | dict[str, object]], **settings: object) -> LimiterCore:
    return LimiterCore(settings_from_mapping({**settings, "limits": limits}), MemoryBackend())


async def test_first_come_first_served() -> None:
    core = core_of({"k": "50/s burst 1"})
    order: list[tuple[float, int]] = []

    async def caller(i: int) -> None:
        d = await core.acquire("k", 1, 10.0)
        assert d.granted
        order.append((d.granted_at, i))

    tasks = []
    for i in range(30):
        tasks.append(asyncio.create_task(caller(i)))
        await asyncio.sleep(0)  # let it take its place in line
    await asyncio.gather(*tasks)
    assert [i for _, i in sorted(order)] == list(range(30))
    await core.close()


async def test_interactive_goes_first_and_batch_is_not_starved() -> None:
    core = core_of({"k": "200/s burst 1"}, reserve_ahead_ms=0)
    served: list[Priority] = []
    stop = asyncio.Event()

    async def caller(priority: Priority) -> None:
        while not stop.is_set():
            d = await core.acquire("k", 1, 30.0, priority)
            assert d.granted
            served.append(priority)

    tasks = [asyncio.create_task(caller(Priority.BATCH)) for _ in range(8)]
    tasks += [asyncio.create_task(caller(Priority.INTERACTIVE)) for _ in range(8)]
    while len(served) < 300:
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*tasks)
    interactive, batch = served.count(Priority.INTERACTIVE), served.count(Priority.BATCH)
    # Weights 16 : 1 while both wait: interactive dominates, batch keeps a share.
    assert interactive > 8 * batch
    assert batch >= 300 / 17 / 2
    await core.close()


async def test_a_late_interactive_caller_overtakes_queued_batch_callers() -> None:
    core = core_of({"k": "100/s burst 1"}, reserve_ahead_ms=0)
    order: list[str] = []

    async def caller(name: str, priority: Priority) -> None:
        assert (await core.acquire("k", 1, 30.0, priority)).granted
        order.append(name)

    batch = [asyncio.create_task(caller(f"b{i}", Priority.BATCH)) for i in range(20)]
    await asyncio.sleep(0.03)
    await asyncio.create_task(caller("interactive", Priority.INTERACTIVE))
    await asyncio.gather(*batch)
    # It waited for at most the slot in progress, not for the batch line.
    assert order.index("interactive") <= len(order) - 20 + 5
    await core.close()


async def test_deadlines_are_honoured_and_hopeless_ones_refused_at_once() -> None:
    core = core_of({"k": "20/s burst 1"})
    waits = [0.25 + i * 0.2 for i in range(20)]
    queued = [asyncio.create_task(core.acquire("k", 1, w)) for w in waits]
    await asyncio.sleep(0.01)
    state = core._keys["k"]
    hopeless = await core.acquire("k", 1, 0.2)
    # Refused while the line is still there, not after waiting out its 0.2 s.
    assert not hopeless.granted and len(state.queue) >= 10
    assert hopeless.retry_after_s >= 0.2
    decisions = await asyncio.gather(*queued)
    for max_wait, d in zip(waits, decisions, strict=True):
        if d.granted:
            assert d.wait_s <= max_wait
    assert sum(d.granted for d in decisions) >= 15
    await core.close()


async def test_a_cancelled_waiter_leaves_the_line_without_losing_a_slot() -> None:
    core = core_of({"k": "50/s burst 1"}, reserve_ahead_ms=0)
    first = await core.acquire("k", 1, 1.0)
    assert first.granted
    doomed = asyncio.create_task(core.acquire("k", 1, 5.0))
    after = asyncio.create_task(core.acquire("k", 1, 5.0))
    await asyncio.sleep(0.005)
    doomed.cancel()
    d = await after
    assert d.granted
    # The next slot (20 ms after the first), not the one after it: the cancelled slot was
    # given back. (Later only by how late `after` reached the line on a busy machine.)
    assert 0.015 <= d.granted_at - first.granted_at < 0.04
    await core.close()


async def test_leases_give_back_what_was_not_spent() -> None:
    core = core_of({"k": "10/s burst 10"})
    lease = await core.acquire_lease("k", 6, 0.0, ttl_s=5.0)
    assert isinstance(lease, Lease) and lease.tokens == 6 and lease.expires_in_s == pytest.approx(5.0)
    _, state = await core.describe("k")
    assert state.available == 4
    assert await core.release_lease(lease.lease_id, used=2) == 4
    assert await core.release_lease(lease.lease_id, used=0) == 0  # only once
    _, state = await core.describe("k")
    assert state.available >= 8
    refused = await core.acquire_lease("k", 10, 0.0)
    assert isinstance(refused, Decision) and not refused.granted
    await core.close()


async def test_reconcile_charges_what_was_really_used() -> None:
    core = core_of({"llm": {"rate": 60000, "period": "1m", "burst": 1000, "unit": "tokens"}})
    assert (await core.acquire("llm", 800)).granted
    await core.reconcile("llm", reserved=800, actual=300)
    _, state = await core.describe("llm")
    assert state.available >= 700
    await core.reconcile("llm", reserved=100, actual=2100)  # underestimated: charged as debt
    _, state = await core.describe("llm")
    assert state.available == 0 and state.full_in_s > 1.0
    await core.close()


async def test_a_reported_429_pauses_the_key_for_everyone() -> None:
    core = core_of({"k": "100/s burst 10"})
    reported_at = time.time()
    assert await core.report_throttled("k", 0.5) == 0.5
    refused = await core.acquire("k", 1, 0.0)
    assert not refused.granted and refused.retry_after_s == pytest.approx(0.5, abs=0.05)
    waited = await core.acquire("k", 1, 2.0)
    # Nothing is granted before the pause ends (granted_at is the slot's start).
    assert waited.granted and waited.granted_at >= reported_at + 0.5 - 0.001
    _, state = await core.describe("k")
    assert 0 < state.paused_for_s <= 0.5
    assert await core.report_throttled("k", 0.0) == 1.0  # no Retry-After: the default pause
    await core.close()


async def test_too_many_waiters_and_bad_requests() -> None:
    core = core_of({"k": "1/s burst 1"}, max_waiters_per_key=2)
    assert (await core.acquire("k", 1, 0)).granted
    waiting = [asyncio.create_task(core.acquire("k", 1, 10.0)) for _ in range(2)]
    await asyncio.sleep(0.01)
    with pytest.raises(TooManyWaiters) as info:
        await core.acquire("k", 1, 10.0)
    assert info.value.retry_after_s > 0
    with pytest.raises(UnknownKey):
        await core.acquire("nope")
    with pytest.raises(InvalidRequest) as bad:
        await core.acquire("k", 2)
    assert bad.value.field == "cost"
    with pytest.raises(InvalidRequest):
        await core.acquire("", 1)
    with pytest.raises(InvalidRequest):
        await core.acquire("k", 1, -1.0)
    with pytest.raises(InvalidRequest):
        await core.reconcile("k", -1, 0)
    for task in waiting:
        task.cancel()
    await core.close()


async def test_submit_decides_at_once_or_hands_out_a_future() -> None:
    core = core_of({"k": "10/s burst 1"}, reserve_ahead_ms=0)
    now = core.submit("k", 1, 0.0)
    assert isinstance(now, Decision) and now.granted
    later = core.submit("k", 1, 5.0)
    assert isinstance(later, asyncio.Future)
    third = core.submit("k", 1, 5.0)
    assert isinstance(third, asyncio.Future)
    state = core._keys["k"]
    assert len(state.queue) == 2
    third.cancel()  # the stream went away: it leaves the line
    await asyncio.sleep(0)
    assert len(state.queue) == 1
    decision = await later
    assert decision.granted
    with pytest.raises(InvalidRequest):
        core.submit("k", 5)
    await core.close()
