"""The jitter proxy in front of the mock: answers pass unchanged, each request is delayed."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from stepstream.mockapi import LLM, MockApiConfig, MockApiServer, Window, fetch_stats
from stepstream.mockapi.jitter import JitterProxy


async def test_requests_and_answers_pass_unchanged_and_late() -> None:
    config = MockApiConfig(
        limits={LLM: Window(3, 3600.0)}, token_limits={LLM: Window(100, 3600.0)}, latency_ms=(0.0, 0.0)
    )
    async with (
        MockApiServer(config) as api,
        JitterProxy(api.url, delay_ms=(30.0, 30.0)) as proxy,
        httpx.AsyncClient(base_url=proxy.url) as client,
    ):
        loop = asyncio.get_running_loop()
        began = loop.time()
        answers = await asyncio.gather(
            *(client.post("/llm/v1/chat/completions", json={"tokens": 10}) for _ in range(4))
        )
        took = loop.time() - began
        wiki = await client.get(
            "/wikipedia/w/api.php", params={"action": "query", "list": "search", "srsearch": "x"}
        )
        stats = await fetch_stats(proxy.url)  # the stats endpoint works through the proxy as well
    assert took >= 0.03
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 200, 200, 429]
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.headers["Retry-After"] == "3600"
    assert refused.json()["limit"] == "requests"
    assert {a.headers["x-ratelimit-limit-tokens"] for a in answers} == {"100"}
    assert wiki.json()["query"]["search"]
    assert stats["endpoints"][LLM]["tokens_admitted"] == 30
    assert proxy.forwarded == 6


async def test_delays_spread_over_the_range_and_reorder_requests() -> None:
    config = MockApiConfig(limits={"a": Window(1000, 3600.0)}, token_limits={}, latency_ms=(0.0, 0.0))
    async with (
        MockApiServer(config) as api,
        JitterProxy(api.url, delay_ms=(0.0, 50.0), seed=5) as proxy,
        httpx.AsyncClient(base_url=proxy.url) as client,
    ):
        sent = []
        for i in range(40):  # sent 1 ms apart, in order, each saying its place in `tokens`
            sent.append(asyncio.create_task(client.get("/api/a", params={"tokens": i})))
            await asyncio.sleep(0.001)
        assert {a.status_code for a in await asyncio.gather(*sent)} == {200}
        arrived = (await client.get("/stats/arrivals/a")).json()["tokens"]
    assert sorted(arrived) == list(range(40))
    assert arrived != list(range(40))  # a 0-50 ms spread reorders requests sent 1 ms apart


def test_a_bad_range_is_refused() -> None:
    with pytest.raises(ValueError, match="MIN <= MAX"):
        JitterProxy("http://127.0.0.1:1", delay_ms=(50.0, 0.0))
