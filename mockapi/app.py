"""The aiohttp application: Wikipedia- and arXiv-shaped search endpoints behind a rate limit.

Each endpoint has its own limit, as the real services do; a request over it is
refused at once with HTTP 429 and a Retry-After header, before any simulated
latency, so a client that ignores the header sees a storm of cheap refusals.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Final
from urllib.parse import urlencode

from aiohttp import web

from stepstream.mockapi import content
from stepstream.mockapi.ratelimit import Gcra

WIKIPEDIA: Final = "wikipedia"
ARXIV: Final = "arxiv"
ENDPOINTS: Final = (WIKIPEDIA, ARXIV)

_ATOM = "http://www.w3.org/2005/Atom"
_OPENSEARCH = "http://a9.com/-/spec/opensearch/1.1/"
_ARXIV_NS = "http://arxiv.org/schemas/atom"
ET.register_namespace("", _ATOM)
ET.register_namespace("opensearch", _OPENSEARCH)
ET.register_namespace("arxiv", _ARXIV_NS)


@dataclass(frozen=True)
class Limit:
    """`rate` requests per second with bursts of `burst`; a rate of 0 means unlimited."""

    rate: float
    burst: int

    @classmethod
    def per_second(cls, rate: float, burst: int | None = None) -> Limit:
        # Default burst: a fifth of a second's worth, as public APIs tolerate short bunches.
        return cls(rate, burst if burst is not None else max(1, math.ceil(rate / 5)))


@dataclass(frozen=True)
class MockApiConfig:
    limits: dict[str, Limit] = field(
        default_factory=lambda: {WIKIPEDIA: Limit.per_second(50), ARXIV: Limit.per_second(50)}
    )
    # Each served request waits a uniform random time in this range, like a remote API.
    latency_ms: tuple[float, float] = (20.0, 80.0)
    seed: int | None = None


@dataclass
class EndpointStats:
    requests: int = 0  # every request that reached the endpoint
    served: int = 0  # answered 200 with results
    rate_limited: int = 0  # refused with 429
    # When each admitted request arrived (seconds since start), for the sustained rate.
    admitted_at: list[float] = field(default_factory=list, repr=False)

    def peak_rate(self, window_s: float = 5.0) -> float | None:
        """Requests admitted per second in the busiest `window_s` seconds."""
        times = self.admitted_at
        if not times or times[-1] - times[0] < window_s:
            return None
        best, start = 0, 0
        for end, t in enumerate(times):
            while t - times[start] >= window_s:
                start += 1
            best = max(best, end - start + 1)
        return best / window_s

    def admitted_per_second(self) -> list[int]:
        """Requests admitted in each whole second since the API started."""
        counts = [0] * (int(self.admitted_at[-1]) + 1 if self.admitted_at else 0)
        for t in self.admitted_at:
            counts[int(t)] += 1
        return counts


class MockApi:
    """State shared by the handlers: limiters, counters, the latency source."""

    def __init__(self, config: MockApiConfig) -> None:
        self.config = config
        unlimited = Limit(0, 1)
        self.limiters = {
            name: Gcra(config.limits.get(name, unlimited).rate, config.limits.get(name, unlimited).burst)
            for name in ENDPOINTS
        }
        self.stats = {name: EndpointStats() for name in ENDPOINTS}
        self.started = time.monotonic()
        self._rng = random.Random(config.seed)

    async def simulate_latency(self) -> None:
        low, high = self.config.latency_ms
        if high > 0:
            await asyncio.sleep(self._rng.uniform(low, high) / 1000)

    def snapshot(self) -> dict[str, Any]:
        return {
            "endpoints": {
                name: {
                    "requests": self.stats[name].requests,
                    "served": self.stats[name].served,
                    "rate_limited": self.stats[name].rate_limited,
                    "peak_rate_5s": self.stats[name].peak_rate(),
                    "admitted_per_s": self.stats[name].admitted_per_second(),
                    "rate": self.limiters[name].rate,
                    "burst": self.limiters[name].burst,
                }
                for name in ENDPOINTS
            },
            "latency_ms": list(self.config.latency_ms),
            "uptime_s": round(time.monotonic() - self.started, 3),
        }

    def reset(self) -> None:
        self.stats = {name: EndpointStats() for name in ENDPOINTS}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATE: Final = web.AppKey("mockapi", MockApi)


def limited(endpoint: str, handler: Handler) -> Handler:
    """Count the request, refuse it with 429 when over the endpoint's limit, else delay and serve."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        api = request.app[STATE]
        stats = api.stats[endpoint]
        stats.requests += 1
        decision = api.limiters[endpoint].acquire()
        if not decision.allowed:
            stats.rate_limited += 1
            # RFC 9110 delay-seconds is a whole number: round up so a client that obeys it succeeds.
            whole = max(1, math.ceil(decision.retry_after_s))
            precise = round(decision.retry_after_s, 3)
            return web.json_response(
                {"error": "rate limited", "endpoint": endpoint, "retry_after": precise},
                status=429,
                headers={"Retry-After": str(whole)},
            )
        stats.admitted_at.append(time.monotonic() - api.started)
        await api.simulate_latency()
        response = await handler(request)
        if response.status == 200:
            stats.served += 1
        return response

    return wrapped


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(request.query.get(name, default))
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an integer") from None
    return min(max(value, low), high)


async def wikipedia_search(request: web.Request) -> web.Response:
    """`/w/api.php?action=query&list=search&srsearch=Q&format=json`, the MediaWiki search shape."""
    q = request.query
    if q.get("action") != "query" or q.get("list") != "search":
        # MediaWiki reports API errors in the body with status 200.
        return web.json_response({"error": {"code": "badvalue", "info": "only action=query&list=search"}})
    query = q.get("srsearch", "").strip()
    if not query:
        error = {"code": "nosrsearch", "info": 'The "srsearch" parameter must be set.'}
        return web.json_response({"error": error})
    limit = _int_param(request, "srlimit", 10, 1, 500)
    offset = _int_param(request, "sroffset", 0, 0, 10_000)
    total = content.total_hits(query, WIKIPEDIA)
    pages = [content.wiki_page(query, i) for i in range(offset, min(offset + limit, total))]
    body: dict[str, Any] = {
        "batchcomplete": "",
        "query": {
            "searchinfo": {"totalhits": total},
            "search": [{"ns": 0, **asdict(page)} for page in pages],
        },
    }
    if offset + limit < total:
        body["continue"] = {"sroffset": offset + limit, "continue": "-||"}
    return web.json_response(body)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    element.text = text
    return element


async def arxiv_query(request: web.Request) -> web.Response:
    """`/api/query?search_query=Q&start=S&max_results=N`, an Atom feed shaped like arXiv's."""
    search = request.query.get("search_query", "").strip()
    start = _int_param(request, "start", 0, 0, 30_000)
    max_results = _int_param(request, "max_results", 10, 0, 2_000)
    total = content.total_hits(search, ARXIV) if search else 0
    feed = ET.Element(f"{{{_ATOM}}}feed")
    self_query = urlencode({"search_query": search, "start": start, "max_results": max_results})
    _sub(feed, f"{{{_ATOM}}}link", href=f"{request.url.origin()}{request.path}?{self_query}", rel="self")
    _sub(feed, f"{{{_ATOM}}}title", f"ArXiv Query: {self_query}", type="html")
    _sub(feed, f"{{{_ATOM}}}id", f"http://arxiv.org/api/{content.feed_id(search)}")
    _sub(feed, f"{{{_ATOM}}}updated", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    _sub(feed, f"{{{_OPENSEARCH}}}totalResults", str(total))
    _sub(feed, f"{{{_OPENSEARCH}}}startIndex", str(start))
    _sub(feed, f"{{{_OPENSEARCH}}}itemsPerPage", str(max_results))
    for i in range(start, min(start + max_results, total)):
        paper = content.paper(search, i)
        entry = _sub(feed, f"{{{_ATOM}}}entry")
        _sub(entry, f"{{{_ATOM}}}id", f"http://arxiv.org/abs/{paper.arxiv_id}v1")
        _sub(entry, f"{{{_ATOM}}}published", paper.published)
        _sub(entry, f"{{{_ATOM}}}updated", paper.published)
        _sub(entry, f"{{{_ATOM}}}title", paper.title)
        _sub(entry, f"{{{_ATOM}}}summary", paper.summary)
        for name in paper.authors:
            _sub(_sub(entry, f"{{{_ATOM}}}author"), f"{{{_ATOM}}}name", name)
        _sub(entry, f"{{{_ATOM}}}link", href=f"http://arxiv.org/abs/{paper.arxiv_id}v1", rel="alternate")
        _sub(entry, f"{{{_ARXIV_NS}}}primary_category", term=paper.category, scheme=_ARXIV_NS)
        _sub(entry, f"{{{_ATOM}}}category", term=paper.category, scheme=_ARXIV_NS)
    body = ET.tostring(feed, encoding="unicode", xml_declaration=True)
    return web.Response(text=body, content_type="application/atom+xml")


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].snapshot())


async def reset_stats(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.json_response(request.app[STATE].snapshot())


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(config: MockApiConfig | None = None) -> web.Application:
    app = web.Application()
    app[STATE] = MockApi(config or MockApiConfig())
    app.router.add_get("/wikipedia/w/api.php", limited(WIKIPEDIA, wikipedia_search))
    app.router.add_get("/arxiv/api/query", limited(ARXIV, arxiv_query))
    app.router.add_get("/stats", stats)
    app.router.add_post("/stats/reset", reset_stats)
    app.router.add_get("/healthz", health)
    return app
