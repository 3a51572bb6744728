"""The aiohttp application: Wikipedia-, arXiv- and LLM-shaped endpoints behind rate limits.

Each endpoint has its own requests limit and, where configured, a tokens limit
beside it, in any shape (GCRA, sliding or fixed window; see `limits`). A request
over either is refused at once with HTTP 429 and Retry-After, before any
simulated latency, so a client that ignores the header sees a storm of cheap
refusals; every answer carries the rate-limit headers real APIs send, so a
client can learn the budget from them (see `headers`).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, Final
from urllib.parse import urlencode

from aiohttp import web

from stepstream.mockapi import content
from stepstream.mockapi.config import ARXIV, BUILTIN, LLM, WIKIPEDIA, MockApiConfig
from stepstream.mockapi.headers import limit_headers
from stepstream.mockapi.limits import UNLIMITED, Counter, Limit, Shape, Window, counter
from stepstream.mockapi.stats import DEFAULT_SHARE_WINDOW_S, EndpointStats, describe

__all__ = ["ARXIV", "BUILTIN", "LLM", "WIKIPEDIA", "Limit", "MockApiConfig", "Shape", "Window", "create_app"]

_ATOM = "http://www.w3.org/2005/Atom"
_OPENSEARCH = "http://a9.com/-/spec/opensearch/1.1/"
_ARXIV_NS = "http://arxiv.org/schemas/atom"
ET.register_namespace("", _ATOM)
ET.register_namespace("opensearch", _OPENSEARCH)
ET.register_namespace("arxiv", _ARXIV_NS)


class Endpoint:
    """One endpoint's two limits (requests, tokens) and its counters."""

    def __init__(self, name: str, requests: Shape, tokens: Shape) -> None:
        self.name = name
        self.requests: Counter = counter(requests)
        self.tokens: Counter = counter(tokens)
        self.stats = EndpointStats()

    def decide(self, tokens: int) -> tuple[str, float] | None:
        """None when both limits allow the request now (and take it from both, all or
        nothing); else which limit refused and the wait before a retry could pass."""
        refusals = [
            (which, decision.retry_after_s)
            for which, live, cost in (("requests", self.requests, 1), ("tokens", self.tokens, tokens))
            if not (decision := live.check(cost)).allowed
        ]
        if refusals:
            return max(refusals, key=lambda refusal: refusal[1])
        self.requests.take(1)
        self.tokens.take(tokens)
        return None

    def snapshot(self, share_window_s: float) -> dict[str, Any]:
        s = self.stats
        req, tok = self.requests.shape, self.tokens.shape
        return {
            "requests": s.requests,
            "served": s.served,
            "rate_limited": s.rate_limited,
            "refused_by": dict(s.refused_by),
            "too_large": s.too_large,
            "tokens_admitted": s.tokens_admitted,
            "others_requests": s.others_requests,
            "others_tokens": s.others_tokens,
            "peak_rate_5s": s.peak_rate(),
            "admitted_per_s": s.admitted_per_second(),
            "rate": req.per_second_rate,
            "burst": req.burst if isinstance(req, Limit) else None,
            "limits": {
                "requests": describe(req) | s.share(req, [1] * len(s.admitted_at), share_window_s),
                "tokens": describe(tok) | s.share(tok, s.admitted_tokens, share_window_s),
            },
        }


class MockApi:
    """State shared by the handlers: endpoints, the latency source."""

    def __init__(self, config: MockApiConfig) -> None:
        self.config = config
        self.endpoints = {
            name: Endpoint(name, config.limits.get(name, UNLIMITED), config.token_limits.get(name, UNLIMITED))
            for name in config.endpoints
        }
        self.started = time.monotonic()
        self.started_wall = time.time()
        self._rng = random.Random(config.seed)

    async def _wait_ms(self, bounds: tuple[float, float]) -> None:
        low, high = bounds
        if high > 0:
            await asyncio.sleep(self._rng.uniform(low, high) / 1000)

    async def simulate_latency(self) -> None:
        await self._wait_ms(self.config.latency_ms)

    async def arrival_jitter(self) -> None:
        await self._wait_ms(self.config.arrival_jitter_ms)

    def snapshot(self, share_window_s: float = DEFAULT_SHARE_WINDOW_S) -> dict[str, Any]:
        return {
            "endpoints": {name: e.snapshot(share_window_s) for name, e in self.endpoints.items()},
            "latency_ms": list(self.config.latency_ms),
            "arrival_jitter_ms": list(self.config.arrival_jitter_ms),
            "uptime_s": round(time.monotonic() - self.started, 3),
            "started_wall": self.started_wall,
        }

    def reset(self) -> None:
        """Zero the counters (not the limits' state: the API's budget stays spent)."""
        self.started = time.monotonic()
        self.started_wall = time.time()
        for endpoint in self.endpoints.values():
            endpoint.stats = EndpointStats()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TokensOf = Callable[[web.Request], Awaitable[int]]
STATE: Final = web.AppKey("mockapi", MockApi)
TOKENS: Final = web.RequestKey("tokens", int)
BODY: Final = web.RequestKey("body", dict)


async def no_tokens(request: web.Request) -> int:
    return 0


async def tokens_param(request: web.Request) -> int:
    """`?tokens=N`, or a JSON body's "tokens" field: what the call says it used."""
    raw: Any = request.query.get("tokens")
    if raw is None and request.can_read_body:
        body = await _json_body(request)
        raw = body.get("tokens", 0)
    return _whole(raw or 0, "tokens")


def _whole(raw: Any, name: str) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise web.HTTPBadRequest(text=f"{name} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise web.HTTPBadRequest(text=f"{name} must be 0 or more, got {value}")
    return value


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


def limited(endpoint: str, handler: Handler, tokens_of: TokensOf = no_tokens) -> Handler:
    """Count the request, refuse it with 429 when over either limit, else delay and serve."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        api = request.app[STATE]
        await api.arrival_jitter()
        tokens = await tokens_of(request)
        request[TOKENS] = tokens
        ep = api.endpoints[endpoint]
        stats = ep.stats
        stats.requests += 1
        refusal = ep.decide(tokens)
        if refusal is not None:
            which, wait = refusal
            if math.isinf(wait):
                stats.too_large += 1
                raise web.HTTPRequestEntityTooLarge(
                    max_size=ep.tokens.remaining(),
                    actual_size=tokens,
                    text=f"{tokens} tokens is more than {ep.tokens.shape.spec()} ever allows at once",
                )
            stats.rate_limited += 1
            stats.refused_by[which] += 1
            # RFC 9110 delay-seconds is a whole number: round up so a client that obeys it succeeds.
            headers = limit_headers(ep.requests, ep.tokens, openai=_openai_style(endpoint, ep))
            headers |= {
                "Retry-After": str(max(1, math.ceil(wait))),
                "retry-after-ms": str(math.ceil(wait * 1000)),
            }
            body = {
                "error": "rate limited",
                "endpoint": endpoint,
                "limit": which,
                "retry_after": round(wait, 3),
            }
            return web.json_response(body, status=429, headers=headers)
        stats.admit(time.monotonic() - api.started, tokens)
        headers = limit_headers(ep.requests, ep.tokens, openai=_openai_style(endpoint, ep))
        await api.simulate_latency()
        response = await handler(request)
        response.headers.update(headers)
        if response.status == 200:
            stats.served += 1
        return response

    return wrapped


def _openai_style(name: str, ep: Endpoint) -> bool:
    return name == LLM or not isinstance(ep.tokens.shape, Limit) or not ep.tokens.shape.unlimited


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


async def llm_tokens(request: web.Request) -> int:
    """The tokens an LLM call uses: the body's "tokens" if it says, else an estimate as a
    provider makes one (about 4 characters a token of the prompt, plus max_tokens)."""
    body = await _json_body(request)
    request[BODY] = body
    if "tokens" in body:
        return _whole(body["tokens"], "tokens")
    messages = body.get("messages") or []
    if not isinstance(messages, list):
        raise web.HTTPBadRequest(text="messages must be a list of {role, content}")
    chars = sum(len(str(m.get("content", ""))) for m in messages if isinstance(m, dict))
    return math.ceil(chars / 4) + _whole(body.get("max_tokens", 16), "max_tokens")


async def llm_chat(request: web.Request) -> web.Response:
    """`POST /llm/v1/chat/completions`: an OpenAI-shaped answer whose usage block reports the
    tokens the mock counted against the tokens limit."""
    body: dict[str, Any] = request[BODY]
    total = request[TOKENS]
    completion = min(total, _whole(body.get("max_tokens", 16), "max_tokens"))
    prompt = total - completion
    text = " ".join(["token"] * min(completion, 64))
    return web.json_response(
        {
            "id": f"chatcmpl-mock-{random.getrandbits(48):012x}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model", "mock-llm")),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total},
        }
    )


def generic(name: str) -> Handler:
    """`GET|POST /api/{name}`: an endpoint with nothing but its limits, for tests of the shapes."""

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "endpoint": name, "usage": {"total_tokens": request[TOKENS]}})

    return handler


async def spend(request: web.Request) -> web.Response:
    """`POST /spend/{name}?requests=K&tokens=T`: another consumer takes budget (all or nothing)
    without being counted as the measured caller; answers with the same headers as the endpoint."""
    api = request.app[STATE]
    name = request.match_info["name"]
    ep = api.endpoints.get(name)
    if ep is None:
        raise web.HTTPNotFound(text=f"no endpoint {name!r}; known: {', '.join(api.endpoints)}")
    count = _whole(request.query.get("requests", 1), "requests")
    tokens = _whole(request.query.get("tokens", 0), "tokens")
    refusal = None
    if ep.requests.check(count).allowed and ep.tokens.check(tokens).allowed:
        ep.requests.take(count)
        ep.tokens.take(tokens)
        ep.stats.others_requests += count
        ep.stats.others_tokens += tokens
    else:
        refusal = "over the limit"
    headers = limit_headers(ep.requests, ep.tokens, openai=_openai_style(name, ep))
    body = {"spent": refusal is None, "requests": count, "tokens": tokens}
    return web.json_response(body, status=200 if refusal is None else 429, headers=headers)


async def stats(request: web.Request) -> web.Response:
    raw = request.query.get("window", DEFAULT_SHARE_WINDOW_S)
    try:
        window = float(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"window must be a number of seconds, got {raw!r}") from None
    if not 0 < window <= 86_400:
        raise web.HTTPBadRequest(text=f"window must be in (0, 86400] seconds, got {window}")
    return web.json_response(request.app[STATE].snapshot(window))


async def arrivals(request: web.Request) -> web.Response:
    """`GET /stats/arrivals/{name}`: when each admitted request was counted (seconds since the
    start or the last reset, on the mock's monotonic clock) and its tokens, oldest first."""
    api = request.app[STATE]
    name = request.match_info["name"]
    ep = api.endpoints.get(name)
    if ep is None:
        raise web.HTTPNotFound(text=f"no endpoint {name!r}; known: {', '.join(api.endpoints)}")
    # started_wall + at is the wall-clock time of each arrival, the clock fixed windows count on.
    body = {"started_wall": api.started_wall, "at": ep.stats.admitted_at, "tokens": ep.stats.admitted_tokens}
    return web.json_response(body)


async def reset_stats(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.json_response(request.app[STATE].snapshot())


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(config: MockApiConfig | None = None) -> web.Application:
    app = web.Application()
    api = MockApi(config or MockApiConfig())
    app[STATE] = api
    app.router.add_get("/wikipedia/w/api.php", limited(WIKIPEDIA, wikipedia_search))
    app.router.add_get("/arxiv/api/query", limited(ARXIV, arxiv_query))
    app.router.add_post("/llm/v1/chat/completions", limited(LLM, llm_chat, llm_tokens))
    for name in api.endpoints:
        if name not in BUILTIN:
            handler = limited(name, generic(name), tokens_param)
            app.router.add_route("GET", f"/api/{name}", handler)
            app.router.add_route("POST", f"/api/{name}", handler)
    app.router.add_post("/spend/{name}", spend)
    app.router.add_get("/stats", stats)
    app.router.add_post("/stats/reset", reset_stats)
    app.router.add_get("/stats/arrivals/{name}", arrivals)
    app.router.add_get("/healthz", health)
    return app
