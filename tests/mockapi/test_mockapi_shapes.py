"""Every limit shape over real HTTP: headers, tokens, the LLM endpoint, another consumer, stats."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import httpx
import pytest

from stepstream.mockapi import (
    LLM,
    WIKIPEDIA,
    Limit,
    MockApiConfig,
    MockApiProcess,
    MockApiServer,
    Window,
    fetch_stats,
)

pytestmark = pytest.mark.process

# Windows so long that nothing leaves them during a test: the counts below are exact.
LONG = 3600.0


def config(**extra: object) -> MockApiConfig:
    base = MockApiConfig(
        limits={WIKIPEDIA: Window(3, LONG), LLM: Window(4, LONG), "search": Window(2, LONG, fixed=True)},
        token_limits={LLM: Window(100, LONG), "search": Window(10, LONG)},
        latency_ms=(0.0, 0.0),
    )
    return MockApiConfig(**{**base.__dict__, **extra})  # type: ignore[arg-type]


@pytest.fixture
async def api() -> AsyncIterator[MockApiServer]:
    async with MockApiServer(config()) as server:
        yield server


def wiki(query: str = "x") -> dict[str, str]:
    return {"action": "query", "list": "search", "srsearch": query, "format": "json"}


async def test_window_headers_count_down_and_429_carries_retry_after(api: MockApiServer) -> None:
    async with httpx.AsyncClient(base_url=api.url) as client:
        answers = [await client.get("/wikipedia/w/api.php", params=wiki()) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert {a.headers["X-RateLimit-Limit"] for a in answers} == {"3"}
    assert answers[0].headers["RateLimit-Remaining"] == "2"
    # Whole again one window after the newest admission.
    assert LONG - 5 < float(answers[2].headers["X-RateLimit-Reset"]) <= LONG
    refused = answers[3]
    assert int(refused.headers["Retry-After"]) == LONG  # the oldest leaves after a whole window
    assert int(refused.headers["retry-after-ms"]) <= LONG * 1000
    assert refused.json()["limit"] == "requests"
    # Not an LLM endpoint: no OpenAI-style headers.
    assert "x-ratelimit-remaining-requests" not in answers[0].headers


async def test_llm_counts_requests_and_tokens_all_or_nothing(api: MockApiServer) -> None:
    path = "/llm/v1/chat/completions"
    async with httpx.AsyncClient(base_url=api.url) as client:
        first = await client.post(path, json={"model": "m", "tokens": 70, "max_tokens": 20})
        too_many = await client.post(path, json={"tokens": 40})
        fits = await client.post(path, json={"tokens": 30})
        estimated = await client.post(path, json={"messages": [{"role": "user", "content": "x" * 40}]})
        huge = await client.post(path, json={"tokens": 101})
        bad = await client.post(path, json={"tokens": "lots"})
        not_json = await client.post(path, content=b"[1")
    assert first.status_code == 200
    assert first.json()["usage"] == {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70}
    assert first.headers["x-ratelimit-remaining-tokens"] == "30"
    assert first.headers["x-ratelimit-remaining-requests"] == "3"
    assert first.headers["x-ratelimit-limit-tokens"] == "100"
    # OpenAI's form: minutes and seconds, a whole window (less the few ms since) from now.
    assert first.headers["x-ratelimit-reset-tokens"] in ("60m0s", "59m59.999s", "59m59.998s")
    # Over the tokens window: refused, and the requests window kept its request.
    assert too_many.status_code == 429 and too_many.json()["limit"] == "tokens"
    assert too_many.headers["x-ratelimit-remaining-requests"] == "3"
    assert fits.status_code == 200 and fits.headers["x-ratelimit-remaining-tokens"] == "0"
    # 40 characters of prompt (10 tokens) + the default 16 completion tokens: no room left.
    assert estimated.status_code == 429
    assert huge.status_code == 413 and "ever allows" in huge.text
    assert bad.status_code == 400 and "whole number" in bad.text
    assert not_json.status_code == 400
    stats = (await fetch_stats(api.url))["endpoints"][LLM]
    assert (stats["served"], stats["rate_limited"], stats["too_large"]) == (2, 2, 1)
    assert stats["refused_by"] == {"requests": 0, "tokens": 2}
    assert stats["tokens_admitted"] == 100
    assert stats["limits"]["tokens"]["admitted_in_busy"] == 100


async def test_generic_endpoint_takes_tokens_from_query_or_body(api: MockApiServer) -> None:
    async with httpx.AsyncClient(base_url=api.url) as client:
        by_query = await client.get("/api/search", params={"tokens": "6"})
        by_body = await client.post("/api/search", json={"tokens": 5})
        third = await client.get("/api/search")
        unknown = await client.get("/api/nothing")
    assert by_query.json() == {"ok": True, "endpoint": "search", "usage": {"total_tokens": 6}}
    assert by_query.headers["x-ratelimit-remaining-tokens"] == "4"
    assert by_body.status_code == 429 and by_body.json()["limit"] == "tokens"
    assert third.status_code == 200 and third.headers["X-RateLimit-Remaining"] == "0"
    assert unknown.status_code == 404


async def test_another_consumer_spends_and_the_headers_say_so(api: MockApiServer) -> None:
    async with httpx.AsyncClient(base_url=api.url) as client:
        spent = await client.post(f"/spend/{WIKIPEDIA}", params={"requests": 2})
        ours = await client.get("/wikipedia/w/api.php", params=wiki())
        refused = await client.get("/wikipedia/w/api.php", params=wiki())
        over = await client.post(f"/spend/{WIKIPEDIA}", params={"requests": 1})
        nowhere = await client.post("/spend/nowhere")
        bad = await client.post(f"/spend/{WIKIPEDIA}", params={"requests": "-1"})
    assert spent.json()["spent"] is True and spent.headers["X-RateLimit-Remaining"] == "1"
    assert ours.status_code == 200 and ours.headers["X-RateLimit-Remaining"] == "0"
    assert refused.status_code == 429
    assert over.status_code == 429 and over.json()["spent"] is False
    assert nowhere.status_code == 404 and "wikipedia" in nowhere.text
    assert bad.status_code == 400
    stats = (await fetch_stats(api.url))["endpoints"][WIKIPEDIA]
    assert (stats["served"], stats["others_requests"], stats["rate_limited"]) == (1, 2, 1)


async def test_stats_report_the_share_used_and_the_arrivals() -> None:
    # 4 per 0.5 s sliding, hammered for 1.2 s: the busy span holds at most 4 * 3 admissions.
    cfg = MockApiConfig(limits={"burst": Window(4, 0.5)}, token_limits={}, latency_ms=(0.0, 0.0))
    async with MockApiServer(cfg) as api, httpx.AsyncClient(base_url=api.url) as client:
        loop = asyncio.get_running_loop()
        end = loop.time() + 1.2
        codes: list[int] = []
        while loop.time() < end:
            codes.append((await client.get("/api/burst")).status_code)
            await asyncio.sleep(0.005)
        stats = await fetch_stats(api.url)
        arrivals = (await client.get("/stats/arrivals/burst")).json()
        window = await client.get("/stats", params={"window": "0.5"})
        bad_window = await client.get("/stats", params={"window": "soon"})
    endpoint = stats["endpoints"]["burst"]
    share = endpoint["limits"]["requests"]
    assert endpoint["served"] == codes.count(200) and endpoint["rate_limited"] == codes.count(429)
    assert share["shape"] == "sliding" and share["admitted_in_busy"] == codes.count(200)
    assert share["allowed_in_busy"] in (8, 12)  # 4 x (whole windows in the busy span + 1)
    assert 0 < share["share_used"] <= 1
    assert share["share_used"] == round(codes.count(200) / share["allowed_in_busy"], 4)
    times = arrivals["at"]
    assert len(times) == codes.count(200) and times == sorted(times)
    assert all(sum(1 for u in times[: i + 1] if u > t - 0.5) <= 4 for i, t in enumerate(times))
    assert window.json()["endpoints"]["burst"]["limits"]["requests"]["share_busiest"] == 1.0
    assert bad_window.status_code == 400


async def test_arrival_jitter_delays_the_count_not_the_limit() -> None:
    cfg = MockApiConfig(
        limits={"j": Window(1000, LONG)},
        token_limits={},
        latency_ms=(0.0, 0.0),
        arrival_jitter_ms=(20.0, 20.0),
    )
    async with MockApiServer(cfg) as api, httpx.AsyncClient(base_url=api.url) as client:
        loop = asyncio.get_running_loop()
        began = loop.time()
        answers = await asyncio.gather(*(client.get("/api/j") for _ in range(5)))
        took = loop.time() - began
    assert {a.status_code for a in answers} == {200}
    assert took >= 0.02  # every request waited its 20 ms before it was counted


@pytest.mark.process
async def test_process_takes_limits_as_flags_and_refuses_bad_ones() -> None:
    argv = [sys.executable, "-m", "stepstream.mockapi"]
    flags = ["--limit", "wikipedia=2 per 1h", "--limit", "q=1 per 1h fixed offset 0.5s"]
    flags += ["--token-limit", "llm=50 per 1h", "--latency-ms", "0"]
    with MockApiProcess(command=[*argv, *flags]) as proc:
        async with httpx.AsyncClient(base_url=proc.url) as client:
            codes = [(await client.get("/wikipedia/w/api.php", params=wiki())).status_code for _ in range(3)]
            q = [(await client.get("/api/q")).status_code for _ in range(2)]
            llm = await client.post("/llm/v1/chat/completions", json={"tokens": 60})
        stats = await fetch_stats(proc.url)
    assert codes == [200, 200, 429] and q == [200, 429] and llm.status_code == 413
    assert stats["endpoints"]["q"]["limits"]["requests"]["spec"] == "1 per 3600s fixed offset 0.5s"
    assert proc.returncode == 0
    bad = await asyncio.create_subprocess_exec(
        *argv, "--port", "0", "--limit", "wikipedia=lots", stderr=asyncio.subprocess.PIPE
    )
    _, err = await bad.communicate()
    assert bad.returncode == 2 and b"bad limit" in err


@pytest.mark.process
async def test_process_gets_the_whole_config_through_a_file() -> None:
    cfg = config(arrival_jitter_ms=(0.0, 1.0), limits={WIKIPEDIA: Limit(0.001, 1), "gcra": Limit(0.001, 2)})
    with MockApiProcess(cfg) as proc:
        stats = await fetch_stats(proc.url)
    shown = {name: e["limits"]["requests"]["spec"] for name, e in stats["endpoints"].items()}
    assert shown == {
        "wikipedia": "0.001/s burst 1",
        "arxiv": "unlimited",
        "llm": "unlimited",
        "gcra": "0.001/s burst 2",
        "search": "unlimited",
    }
    assert stats["endpoints"][LLM]["limits"]["tokens"]["spec"] == "100 per 3600s"
    assert stats["arrival_jitter_ms"] == [0.0, 1.0]
