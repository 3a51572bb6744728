"""Client helpers on the in-process limiter: acquire, decorator, httpx transport, LangChain."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from aiohttp import web
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from stepstream.ratelimiter.client import (
    LocalLimiter,
    RateLimitRefused,
    current_limiter,
    open_limiter,
    rate_limited,
    use_limiter,
)
from stepstream.ratelimiter.client.http import RateLimitedTransport, retry_after_seconds
from stepstream.ratelimiter.client.langchain import LangChainRateLimiter, TokenUsageReconciler
from stepstream.ratelimiter.config import settings_from_mapping


@pytest.fixture
async def limiter() -> AsyncIterator[LocalLimiter]:
    local = LocalLimiter.from_limits(
        {
            "slow": "10/min burst 10",
            "api": "100/s burst 5",
            "llm": {"rate": 1000, "period": "1m", "burst": 500},
        }
    )
    yield local
    await local.close()


async def available(limiter: LocalLimiter, key: str) -> int:
    _, state = await limiter.core.describe(key)
    return state.available


async def test_acquire_as_context_and_awaitable(limiter: LocalLimiter) -> None:
    async with limiter.acquire("slow") as grant:
        assert grant.key == "slow" and grant.cost == 1
    grant = await limiter.acquire("slow", cost=3)
    assert grant.cost == 3
    assert await available(limiter, "slow") == 6
    with pytest.raises(RateLimitRefused) as info:
        await limiter.acquire("slow", cost=7, timeout=0.5)
    assert info.value.retry_after_s > 0.5


async def test_grant_settles_the_real_cost(limiter: LocalLimiter) -> None:
    async with limiter.acquire("llm", cost=400) as grant:
        grant.actual = 100  # the response said 100 tokens were used
    assert await available(limiter, "llm") >= 399


async def test_decorator_uses_the_runs_limiter(limiter: LocalLimiter) -> None:
    @rate_limited("slow", cost=2)
    async def node(state: dict[str, int]) -> dict[str, int]:
        return {"n": state["n"] + 1}

    with pytest.raises(RuntimeError, match="no rate limiter"):
        await node({"n": 0})
    with use_limiter(limiter):
        assert current_limiter() is limiter
        assert await node({"n": 1}) == {"n": 2}
        assert await asyncio.create_task(node({"n": 2})) == {"n": 3}  # tasks inherit it
    assert await available(limiter, "slow") == 6
    with pytest.raises(TypeError):
        rate_limited("slow")(lambda: None)  # type: ignore[arg-type, return-value]


async def test_open_limiter_is_in_process_without_a_sidecar() -> None:
    local = open_limiter(None, settings_from_mapping({"limits": {"a": "1/s"}}))
    assert isinstance(local, LocalLimiter)
    await local.close()


def test_retry_after_header_forms() -> None:
    assert retry_after_seconds("2.5") == 2.5
    assert retry_after_seconds(None) == 0.0 and retry_after_seconds("soon") == 0.0
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < retry_after_seconds(later) <= 30


@pytest.fixture
async def throttling_api(free_port_factory: Callable[[], int]) -> AsyncIterator[tuple[str, list[float]]]:
    """A real HTTP server that answers its first request with 429 and Retry-After: 0.3."""
    seen: list[float] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(time.monotonic())
        if len(seen) == 1:
            return web.Response(status=429, headers={"Retry-After": "0.3"})
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/search", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port_factory()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


async def test_http_transport_reports_429_and_retries_after_the_pause(
    limiter: LocalLimiter, throttling_api: tuple[str, list[float]]
) -> None:
    base, seen = throttling_api
    transport = RateLimitedTransport("api", limiter, timeout=5)
    async with httpx.AsyncClient(transport=transport, base_url=base) as client:
        response = await client.get("/search")
        assert response.status_code == 200 and response.json() == {"ok": True}
    assert transport.throttled == 1 and len(seen) == 2
    # The retry went out only once the reported pause was over.
    assert seen[1] - seen[0] >= 0.3 - 0.01


async def test_langchain_chat_model_uses_the_shared_budget(limiter: LocalLimiter) -> None:
    adapter = LangChainRateLimiter(limiter, "slow", cost=1, timeout=1)
    model = GenericFakeChatModel(
        messages=iter([AIMessage(content=f"answer {i}") for i in range(10)]), rate_limiter=adapter
    )
    for i in range(4):
        assert (await model.ainvoke("question")).content == f"answer {i}"
    assert await available(limiter, "slow") == 6
    # Sync invoke from a worker thread runs the acquire on the limiter's own loop.
    result = await asyncio.to_thread(model.invoke, "question")
    assert result.content == "answer 4"
    assert await available(limiter, "slow") == 5
    # Not blocking: a token now, or False.
    await limiter.acquire("slow", cost=5)
    assert await adapter.aacquire(blocking=False) is False
    with pytest.raises(RateLimitRefused):
        await model.ainvoke("question")
    with pytest.raises(RuntimeError, match="block"):
        adapter.acquire()


async def test_token_usage_settles_the_estimate(limiter: LocalLimiter) -> None:
    adapter = LangChainRateLimiter(limiter, "llm", cost=400, timeout=1)
    usage = {"input_tokens": 30, "output_tokens": 70, "total_tokens": 100}
    model = GenericFakeChatModel(
        messages=iter([AIMessage(content="short answer", usage_metadata=usage)]),  # type: ignore[arg-type]
        rate_limiter=adapter,
        callbacks=[TokenUsageReconciler(adapter)],
    )
    await model.ainvoke("question")
    # 400 reserved, 100 used: 300 came back (the limit refills 1000/min meanwhile, never above 500).
    assert await available(limiter, "llm") >= 399


async def _calls_after_a_stall(paced: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[list[float], float]:
    """When 20 callers of a 50/s key (burst 2) went, the event loop stalling 0.3 s meanwhile;
    and when the last slot the limiter reserved began."""
    if not paced:
        monkeypatch.setattr(LocalLimiter, "limit_of", lambda self, key: None)
    local = LocalLimiter.from_limits({"api": "50/s burst 2"})
    calls: list[float] = []

    async def caller() -> None:
        await local.acquire("api", timeout=30)
        calls.append(time.monotonic())

    try:
        began = time.monotonic()
        callers = [asyncio.create_task(caller()) for _ in range(20)]
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # the event loop stalls (a long GC pause, a blocking call)
        await asyncio.gather(*callers)
    finally:
        await local.close()
    return sorted(calls), began + 19 / 50


def _most_in(calls: list[float], window: float) -> int:
    return max(sum(1 for t in calls if start <= t < start + window) for start in calls)


async def test_callers_woken_late_by_a_stall_are_spaced_out_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # Reserved slots alone: every caller whose slot fell in the stall goes at the same instant.
    unpaced, _ = await _calls_after_a_stall(False, monkeypatch)
    assert _most_in(unpaced, 0.02) >= 10
    monkeypatch.undo()
    # Paced at wake time by the key's own rate and burst: at most the burst, then 1 per 20 ms,
    # and no slot is wasted: the last caller goes within a stall's length of its slot.
    paced, last_slot = await _calls_after_a_stall(True, monkeypatch)
    assert _most_in(paced, 0.02) <= 3
    assert paced[-1] - last_slot < 1.0


async def _goes_on_a_busy_loop(limit: str, seconds: float = 2.0) -> list[float]:
    """When 50 callers of a 50/s key went, the event loop blocked 6 ms at every turn meanwhile."""
    local = LocalLimiter.from_limits({"api": limit})
    calls: list[float] = []
    stop = asyncio.Event()

    async def caller() -> None:
        while not stop.is_set():
            await local.acquire("api", timeout=30)
            calls.append(time.monotonic())

    async def busy() -> None:
        while not stop.is_set():
            time.sleep(0.006)  # a turn of a busy server's loop: every timer fires a little late
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(caller()) for _ in range(50)] + [asyncio.create_task(busy())]
    began = time.monotonic()
    try:
        await asyncio.sleep(seconds)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await local.close()
    return sorted(t for t in calls if t < began + seconds)


async def test_a_burst_lets_callers_woken_late_catch_up_on_a_busy_loop() -> None:
    allowed = 50 * 2.0  # the rate over the run; the burst adds its size once
    # Burst 1 is strict spacing: each caller goes a full interval after the previous one
    # went, so every millisecond a busy loop wakes it late is lost for good.
    strict = await _goes_on_a_busy_loop("50/s burst 1")
    assert len(strict) < 0.8 * (allowed + 1)
    # A burst of 5 lets the next callers make up that lateness: the whole rate is used,
    # and the calls still never exceed rate x window + burst.
    with_burst = await _goes_on_a_busy_loop("50/s burst 5")
    assert len(with_burst) >= 0.95 * (allowed + 5)
    assert _most_in(with_burst, 0.1) <= 50 * 0.1 + 5
    assert _most_in(with_burst, 0.5) <= 50 * 0.5 + 5
