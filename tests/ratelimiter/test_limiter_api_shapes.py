"""Limits as real APIs state them, against real processes: three sidecars on one
Redis, 64 callers each, calling a mock API (a separate process) that enforces a
sliding window, a fixed window on a clock offset from ours, requests and tokens
per window, with requests reaching it late through a jitter proxy, or with
another consumer spending its budget. Whatever the shape: zero 429s, and every
caller is served."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import aiohttp
import pytest

from stepstream.mockapi import MockApiConfig, MockApiProcess, fetch_stats, parse_shape
from stepstream.mockapi.jitter import JitterProxy
from stepstream.ratelimiter.client import RateLimitRefused, RemoteLimiter
from stepstream.ratelimiter.client.headers import learn_from_response

pytestmark = pytest.mark.process

StartSidecar = Callable[..., Any]
CALLERS = 64


@dataclasses.dataclass
class Call:
    caller: int
    granted_at: float  # the slot's start on Redis's clock
    answered_at: float  # wall clock when the API's answer was back
    status: int
    sent_at: float = 0.0  # wall clock when the request was handed to the HTTP client


def sidecar_config(redis_url: str, limits: Mapping[str, str], **settings: object) -> str:
    # A generous store timeout: on a shared 2-core machine a Redis answer can take
    # longer than the 50 ms default, and these tests are about the API's shapes, not
    # about outages (each would hold the window keys while the local budgets hand back).
    lines = [f'redis_url = "{redis_url}"', "expected_replicas = 3", "store_timeout_ms = 500.0"]
    lines += [f"{k} = {v!r}" for k, v in settings.items()]
    lines.append("[limits]")
    lines += [f"{k} = {v}" if v.startswith("{") else f'{k} = "{v}"' for k, v in limits.items()]
    return "\n".join([*lines, ""])


@pytest.fixture
def mock_api() -> Iterator[Callable[..., MockApiProcess]]:
    started: list[MockApiProcess] = []

    def start(requests: Mapping[str, str], tokens: Mapping[str, str] | None = None) -> MockApiProcess:
        config = MockApiConfig(
            limits={k: parse_shape(v) for k, v in requests.items()},
            token_limits={k: parse_shape(v) for k, v in (tokens or {}).items()},
            latency_ms=(1.0, 5.0),
        )
        api = MockApiProcess(config).start()
        started.append(api)
        return api

    try:
        yield start
    finally:
        for api in started:
            api.stop()


async def cluster(
    redis_server: Any, sidecars: StartSidecar, limits: Mapping[str, str], **settings: object
) -> list[RemoteLimiter]:
    await _flush(redis_server.url)
    config = sidecar_config(redis_server.url, limits, **settings)
    return [RemoteLimiter(sidecars(config, name=f"s{i}.toml").target) for i in range(3)]


async def _flush(url: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    await client.flushall()
    await client.aclose()


async def hammer(
    limiters: list[RemoteLimiter],
    url: str,
    seconds: float,
    costs: Callable[[], dict[str, int]],
    actual_tokens: Callable[[int], int] | None = None,
    learn: str | None = None,
    timeout: float = 30.0,
) -> list[Call]:
    """Every caller takes its keys' tokens, then calls the API, until `seconds` have passed."""
    calls: list[Call] = []
    end = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def caller(caller_id: int, limiter: RemoteLimiter) -> None:
            while (left := end - time.monotonic()) > 0:
                wanted = costs()
                try:
                    acquisition = limiter.acquire_many(wanted, timeout=min(timeout, left))
                    grant = await acquisition.__aenter__()
                except RateLimitRefused as refused:
                    await asyncio.sleep(min(refused.retry_after_s, max(end - time.monotonic(), 0)))
                    continue
                try:
                    body: dict[str, int] = {}
                    if actual_tokens is not None:
                        body["tokens"] = actual_tokens(wanted.get("tpm", 0))
                    sent = time.time()
                    async with session.post(url, json=body) as response:
                        await response.read()
                        answered = time.time()
                        headers = dict(response.headers)
                        status = response.status
                    if learn is not None:
                        await learn_from_response(limiter, learn, status, headers)
                    if actual_tokens is not None and status == 200:
                        grant.report_usage("tpm", body["tokens"])
                finally:
                    await acquisition.__aexit__(None, None, None)
                calls.append(Call(caller_id, grant.granted_at, answered, status, sent))

        await asyncio.gather(
            *(caller(s * CALLERS + c, limiter) for s, limiter in enumerate(limiters) for c in range(CALLERS))
        )
    return calls


def spread_ms(calls: list[Call]) -> dict[str, dict[str, float]]:
    """From each grant's slot to the request being sent (a lower bound of the time to
    its arrival at the API) and to the API's answer being back (an upper bound)."""
    out = {}
    for name, end in (("sent", lambda c: c.sent_at), ("answered", lambda c: c.answered_at)):
        spreads = sorted((end(c) - c.granted_at) * 1000 for c in calls)
        out[name] = {
            q: round(spreads[min(int(f * len(spreads)), len(spreads) - 1)], 1) for q, f in _QUANTILES
        }
    return out


_QUANTILES = (("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999), ("max", 1.0))


def assert_fair(calls: list[Call], floor: int = 1) -> None:
    per_caller = {c.caller: 0 for c in calls}
    for c in calls:
        per_caller[c.caller] += 1
    assert len(per_caller) == 3 * CALLERS, "a caller was never served"
    assert min(per_caller.values()) >= floor, f"a caller starved: {sorted(per_caller.values())[:5]}"


async def endpoint_stats(api: MockApiProcess, name: str) -> dict[str, Any]:
    stats = await fetch_stats(api.url)
    endpoint: dict[str, Any] = stats["endpoints"][name]
    return endpoint


async def close_all(limiters: list[RemoteLimiter]) -> None:
    for limiter in limiters:
        await limiter.close()


@pytest.mark.parametrize(
    ("api_limit", "our_limit"),
    [
        ("100 per 1s", "100 per 1s"),
        # A fixed window whose clock is 0.37 s off ours: written with no phase, it is
        # kept as a sliding window, which no fixed window of any phase can overrun.
        ("100 per 1s fixed offset 0.37s", "100 per 1s fixed"),
    ],
    ids=["sliding", "fixed-offset-clock"],
)
async def test_window_apis_see_no_429_and_every_caller_is_served(
    redis_server: Any,
    sidecars: StartSidecar,
    mock_api: Callable[..., MockApiProcess],
    api_limit: str,
    our_limit: str,
) -> None:
    api = mock_api({"search": api_limit})
    limiters = await cluster(redis_server, sidecars, {"search": our_limit})
    seconds = 6.0
    calls = await hammer(limiters, f"{api.url}/api/search", seconds, lambda: {"search": 1})
    await close_all(limiters)
    stats = await endpoint_stats(api, "search")
    print(
        f"\n{api_limit}: {len(calls)} calls, spread {spread_ms(calls)}, stats {stats['limits']['requests']}"
    )
    assert stats["rate_limited"] == 0 and all(c.status == 200 for c in calls)
    assert_fair(calls)
    # Most of the allowed rate is used (loose: the machine is shared; the bench measures it).
    assert len(calls) >= 0.6 * 100 * seconds / 1.05


async def test_requests_reaching_the_api_with_jitter_see_no_429(
    redis_server: Any, sidecars: StartSidecar, mock_api: Callable[..., MockApiProcess]
) -> None:
    api = mock_api({"search": "100 per 1s"})
    limiters = await cluster(redis_server, sidecars, {"search": "100 per 1s"})
    async with JitterProxy(api.url, delay_ms=(0, 50)) as proxy:
        calls = await hammer(limiters, f"{proxy.url}/api/search", 9.0, lambda: {"search": 1})
    await close_all(limiters)
    stats = await endpoint_stats(api, "search")
    late = [limiter.late_slots for limiter in limiters]
    print(f"\njitter 0-50 ms: {len(calls)} calls, late slots given back {late}, spread {spread_ms(calls)}")
    assert stats["rate_limited"] == 0 and all(c.status == 200 for c in calls)
    assert_fair(calls)


@pytest.mark.parametrize(
    ("estimate", "actual"),
    [(800, 500), (300, 450)],
    ids=["estimate-too-high", "estimate-too-low"],
)
async def test_requests_and_tokens_per_call_reconciled(
    redis_server: Any,
    sidecars: StartSidecar,
    mock_api: Callable[..., MockApiProcess],
    estimate: int,
    actual: int,
) -> None:
    # 60 requests and 30,000 tokens a second: with the estimate too high the tokens
    # bind until each call gives its unused estimate back; too low, each call is
    # charged its real use after it (and the requests limit binds).
    api = mock_api({"llm": "60 per 1s"}, {"llm": "30000 per 1s"})
    limiters = await cluster(
        redis_server,
        sidecars,
        {"rpm": "60 per 1s", "tpm": '{ rate = 30000, period = "1s", unit = "tokens" }'},
    )
    seconds = 10.0
    calls = await hammer(
        limiters,
        f"{api.url}/llm/v1/chat/completions",
        seconds,
        lambda: {"rpm": 1, "tpm": estimate},
        actual_tokens=lambda _estimate: actual,
    )
    described = await limiters[1].limits()
    await close_all(limiters)
    stats = await endpoint_stats(api, "llm")
    print(f"\nestimate {estimate}, actual {actual}: {len(calls)} calls; {stats['limits']}")
    assert described["tpm"].unit == "tokens" and described["tpm"].burst == 30000
    assert stats["rate_limited"] == 0 and all(c.status == 200 for c in calls)
    assert stats["tokens_admitted"] == actual * len(calls)
    assert_fair(calls)
    # Reconciled: the budget follows real use, so the estimate does not cap the rate:
    # at 800 estimated, 30,000 tokens would allow 37.5 calls a second; settled at 500, 60.
    assert len(calls) >= 0.6 * min(60, 30000 / actual) * seconds / 1.1


async def test_another_consumer_shrinks_the_shared_budget_for_every_replica(
    redis_server: Any, sidecars: StartSidecar, mock_api: Callable[..., MockApiProcess]
) -> None:
    api = mock_api({"ext": "60 per 10s"})
    limiters = await cluster(redis_server, sidecars, {"ext": "60 per 10s"})
    async with aiohttp.ClientSession() as session:
        # Someone outside stepstream spends 40 of the API's 60.
        async with session.post(f"{api.url}/spend/ext?requests=40") as spent:
            assert spent.status == 200
        # One call of one replica reads X-RateLimit-Remaining: 19 left, not 59.
        async with limiters[0].acquire("ext"), session.get(f"{api.url}/api/ext") as response:
            headers = dict(response.headers)
        assert response.status == 200 and headers["X-RateLimit-Remaining"] == "19"
        learned = await learn_from_response(limiters[0], "ext", response.status, headers)
        assert learned.consumed == {"ext": 40}
    # Every replica sees the smaller budget (another sidecar describes it)...
    assert await limiters[2].observe_remaining("ext", 19) == 0
    # ...and all of them together call flat out (paced: 6 a second) until before the
    # outsider's spending leaves the API's window: no 429, and all 19 calls made.
    calls = await hammer(limiters, f"{api.url}/api/ext", 5.0, lambda: {"ext": 1}, timeout=1.0)
    await close_all(limiters)
    stats = await endpoint_stats(api, "ext")
    assert stats["rate_limited"] == 0 and all(c.status == 200 for c in calls)
    assert len(calls) == 19
