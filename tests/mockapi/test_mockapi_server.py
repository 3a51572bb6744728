"""The mock API over real HTTP on loopback: both response shapes, 429 + Retry-After, counters."""

from __future__ import annotations

import asyncio
import shutil
import sys
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from stepstream.mockapi import (
    ARXIV,
    WIKIPEDIA,
    Limit,
    MockApiConfig,
    MockApiProcess,
    MockApiServer,
    fetch_stats,
    reset_stats,
)

pytestmark = pytest.mark.process

ATOM = "{http://www.w3.org/2005/Atom}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"
NO_LATENCY = (0.0, 0.0)
# So slow that no token comes back during a test: counts below are exact, not timing-dependent.
TINY = Limit(rate=0.001, burst=2)


@pytest.fixture
async def api() -> AsyncIterator[MockApiServer]:
    async with MockApiServer(MockApiConfig(latency_ms=(1.0, 5.0))) as server:
        yield server


@pytest.fixture
async def tiny() -> AsyncIterator[MockApiServer]:
    config = MockApiConfig(limits={WIKIPEDIA: TINY, ARXIV: TINY}, latency_ms=NO_LATENCY)
    async with MockApiServer(config) as server:
        yield server


def wiki_params(query: str, **extra: str) -> dict[str, str]:
    return {"action": "query", "list": "search", "srsearch": query, "format": "json", **extra}


async def test_wikipedia_answers_the_mediawiki_search_shape(api: MockApiServer) -> None:
    async with httpx.AsyncClient(base_url=api.url) as client:
        response = await client.get("/wikipedia/w/api.php", params=wiki_params("graph theory", srlimit="4"))
        again = await client.get("/wikipedia/w/api.php", params=wiki_params("Graph  Theory", srlimit="4"))
    assert response.status_code == 200
    body = response.json()
    hits = body["query"]["search"]
    assert len(hits) == 4
    for hit in hits:
        assert isinstance(hit["title"], str) and isinstance(hit["snippet"], str)
        assert isinstance(hit["pageid"], int) and hit["ns"] == 0
    assert hits[0]["title"] == "Graph theory"
    assert '<span class="searchmatch">graph theory</span>' in hits[0]["snippet"]
    assert body["query"]["searchinfo"]["totalhits"] >= 4
    assert body["continue"]["sroffset"] == 4
    assert again.json() == body  # deterministic, and case/space-insensitive


async def test_wikipedia_reports_api_errors_like_mediawiki(api: MockApiServer) -> None:
    async with httpx.AsyncClient(base_url=api.url) as client:
        missing = await client.get("/wikipedia/w/api.php", params={"action": "query", "list": "search"})
        bad_limit = await client.get("/wikipedia/w/api.php", params=wiki_params("x", srlimit="many"))
    assert missing.status_code == 200
    assert missing.json()["error"]["code"] == "nosrsearch"
    assert bad_limit.status_code == 400


async def test_arxiv_answers_an_atom_feed(api: MockApiServer) -> None:
    async with httpx.AsyncClient(base_url=api.url) as client:
        response = await client.get(
            "/arxiv/api/query", params={"search_query": "all:quantum error correction", "max_results": "3"}
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/atom+xml")
    feed = ET.fromstring(response.content)
    assert feed.tag == f"{ATOM}feed"
    assert int(feed.findtext(f"{OPENSEARCH}totalResults", "0")) >= 3
    entries = feed.findall(f"{ATOM}entry")
    assert len(entries) == 3
    for entry in entries:
        assert "quantum error correction" in entry.findtext(f"{ATOM}title", "").lower()
        assert entry.findtext(f"{ATOM}summary")
        assert entry.findtext(f"{ATOM}id", "").startswith("http://arxiv.org/abs/")
        assert entry.findtext(f"{ATOM}published", "").endswith("Z")
        assert entry.find(f"{ATOM}author/{ATOM}name") is not None


async def test_over_the_limit_answers_429_with_retry_after(tiny: MockApiServer) -> None:
    async with httpx.AsyncClient(base_url=tiny.url) as client:
        statuses = [
            (await client.get("/wikipedia/w/api.php", params=wiki_params("x"))).status_code for _ in range(2)
        ]
        refused = await client.get("/wikipedia/w/api.php", params=wiki_params("x"))
        # The arXiv endpoint has its own budget, untouched by Wikipedia's.
        arxiv = await client.get("/arxiv/api/query", params={"search_query": "all:x"})
    assert statuses == [200, 200]
    assert refused.status_code == 429
    retry_after = int(refused.headers["Retry-After"])  # RFC 9110 delay-seconds
    assert retry_after >= 1
    assert refused.json()["retry_after"] <= retry_after
    assert arxiv.status_code == 200


async def test_concurrent_requests_get_exactly_the_burst(tiny: MockApiServer) -> None:
    async with httpx.AsyncClient(base_url=tiny.url) as client:
        responses = await asyncio.gather(
            *(client.get("/arxiv/api/query", params={"search_query": f"all:q{i}"}) for i in range(20))
        )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * TINY.burst + [429] * (20 - TINY.burst)


async def test_stats_count_served_and_refused_per_endpoint(tiny: MockApiServer) -> None:
    async with httpx.AsyncClient(base_url=tiny.url) as client:
        for _ in range(5):
            await client.get("/wikipedia/w/api.php", params=wiki_params("x"))
        await client.get("/arxiv/api/query", params={"search_query": "all:x"})
    stats = await fetch_stats(tiny.url)
    wikipedia = stats["endpoints"][WIKIPEDIA]
    assert (wikipedia["requests"], wikipedia["served"], wikipedia["rate_limited"]) == (5, 2, 3)
    assert stats["endpoints"][ARXIV]["served"] == 1
    assert stats["endpoints"][ARXIV]["rate_limited"] == 0
    assert stats["endpoints"][WIKIPEDIA]["rate"] == TINY.rate
    # Admitted requests in each second since the API started: the 2 within the burst.
    assert sum(wikipedia["admitted_per_s"]) == 2
    reset = await reset_stats(tiny.url)
    assert reset["endpoints"][WIKIPEDIA]["requests"] == 0


def _stepstream_command() -> list[str]:
    script = Path(sys.executable).with_name("stepstream")
    found = str(script) if script.exists() else shutil.which("stepstream")
    if found is None:
        pytest.skip("the stepstream console script is not installed")
    return [found, "mockapi"]


@pytest.mark.parametrize("command", [None, "console-script"])
async def test_child_process_serves_and_stops(command: str | None) -> None:
    config = MockApiConfig(limits={WIKIPEDIA: Limit(0.001, 1), ARXIV: Limit(50, 5)}, latency_ms=NO_LATENCY)
    argv = _stepstream_command() if command else None
    with MockApiProcess(config, command=argv) as proc:
        async with httpx.AsyncClient(base_url=proc.url) as client:
            first = await client.get("/wikipedia/w/api.php", params=wiki_params("x"))
            second = await client.get("/wikipedia/w/api.php", params=wiki_params("x"))
        stats = await fetch_stats(proc.url)
        assert proc.returncode is None
    assert (first.status_code, second.status_code) == (200, 429)
    assert stats["endpoints"][WIKIPEDIA]["rate_limited"] == 1
    assert stats["endpoints"][ARXIV]["burst"] == 5
    assert proc.returncode == 0  # stopped cleanly by SIGTERM, not left running or killed
