"""The research assistant's search calls: Wikipedia and arXiv over HTTP, polite about 429s.

Kept apart from graph.py so the graph reads as a workflow; graph.py imports it
by this (deliberately distinctive) module name from its own folder.

Annotations are evaluated eagerly (no `from __future__ import annotations`):
LangGraph and pydantic read these TypedDicts at run time, and eager annotations
resolve however the server loaded the file.
"""

import asyncio
import email.utils
import html
import json
import os
import re
import time
import weakref
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
from typing_extensions import TypedDict  # pydantic needs it for JSON schemas on Python < 3.12

try:
    from stepstream.ratelimiter.client import Limiter, current_limiter
    from stepstream.ratelimiter.client.headers import learn_from_response
except ModuleNotFoundError:  # served by a server without stepstream (bench/peers): no shared limiter
    Limiter = Any  # type: ignore[misc,assignment]
    current_limiter = None  # type: ignore[assignment]

Source = Literal["wikipedia", "arxiv"]
SOURCES: tuple[Source, ...] = ("wikipedia", "arxiv")

# `stepstream mockapi` listens here by default; STEPSTREAM_MOCKAPI_URL moves both APIs at once.
DEFAULT_MOCKAPI_URL = "http://127.0.0.1:8765"
_ATOM = "{http://www.w3.org/2005/Atom}"
_TAGS = re.compile(r"<[^>]+>")


class Hit(TypedDict):
    """One search result, the same shape for every source."""

    source: str
    title: str
    snippet: str
    url: str


class SearchRecord(TypedDict):
    """What one search task did, for the answer's footnote and for the demo's counters."""

    source: str
    query: str
    status: Literal["ok", "rate_limited", "error"]
    attempts: int
    http_429: int
    hits: int
    error: str


@dataclass(frozen=True)
class ApiSettings:
    """Where and how to search; read from `config["configurable"]`, then env vars, then defaults."""

    wikipedia_url: str
    arxiv_url: str
    max_results: int = 3
    max_retries: int = 3  # further attempts after a 429
    max_retry_wait_s: float = 5.0  # a Retry-After longer than this gives up at once
    timeout_s: float = 30.0

    @classmethod
    def from_configurable(cls, conf: Mapping[str, Any]) -> "ApiSettings":
        mock = os.environ.get("STEPSTREAM_MOCKAPI_URL", DEFAULT_MOCKAPI_URL).rstrip("/")
        return cls(
            wikipedia_url=str(
                conf.get("wikipedia_url") or os.environ.get("RESEARCH_WIKIPEDIA_URL") or f"{mock}/wikipedia"
            ).rstrip("/"),
            arxiv_url=str(
                conf.get("arxiv_url") or os.environ.get("RESEARCH_ARXIV_URL") or f"{mock}/arxiv"
            ).rstrip("/"),
            # Values may arrive as JSON numbers from any client language: coerce, don't trust.
            max_results=int(conf.get("max_results", cls.max_results)),
            max_retries=int(conf.get("max_retries", cls.max_retries)),
            max_retry_wait_s=float(conf.get("max_retry_wait_s", cls.max_retry_wait_s)),
            timeout_s=float(conf.get("http_timeout_s", cls.timeout_s)),
        )


# ---------------------------------------------------------------------------
# Rate-limit hook points.
#
# Under `stepstream serve --limits FILE` (or `--ratelimiter ADDRESS`) every run
# has stepstream's shared limiter in its context: `api_slot` takes a token of
# the API's key before each HTTP call, so all runs on all replicas share one
# budget per API instead of each run discovering the limit through 429s, and
# `learn_from_api` reads every answer's rate-limit headers into the shared budget:
# a 429 pauses the key for everyone, and an X-RateLimit-Remaining below what the
# budget thinks (someone else spends the same API) shrinks it for every replica.
# Run without a limiter (in-process, in tests, or on another server where
# stepstream is not installed), both do nothing and the API's own limit
# answers 429, which `search` honours.
# ---------------------------------------------------------------------------

# Longest a search waits for its turn in the shared budget before giving up.
SLOT_TIMEOUT_S = 120.0


def _limiter(api: str) -> Limiter | None:
    """The run's limiter, if it has one that knows `api`."""
    if current_limiter is None:
        return None
    try:
        limiter = current_limiter()
    except RuntimeError:
        return None
    # The in-process limiter lists its keys; a sidecar answers NOT_FOUND for a key it lacks.
    known = getattr(limiter, "limits", None)
    return None if isinstance(known, Mapping) and api not in known else limiter


@asynccontextmanager
async def api_slot(api: str) -> AsyncIterator[None]:
    """Take one request's worth of the `api` budget from the run's limiter, if it has one."""
    limiter = _limiter(api)
    if limiter is None:
        yield
        return
    async with limiter.acquire(api, cost=1, timeout=SLOT_TIMEOUT_S):
        yield


async def report_rate_limited(api: str, retry_after_s: float) -> None:
    """Tell the shared limiter that `api` refused us for `retry_after_s`: the key pauses for everyone."""
    limiter = _limiter(api)
    if limiter is not None:
        await limiter.report_throttled(api, retry_after_s)


async def learn_from_api(api: str, status: int, headers: Mapping[str, str]) -> None:
    """Pass what `api` said about its limits (429, remaining, reset) to the run's limiter."""
    limiter = _limiter(api)
    if limiter is not None:
        await learn_from_response(limiter, api, status, headers)


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------

# One session per event loop: a session's pooled connections belong to the loop
# that opened them, and reusing them is what makes thousands of searches cheap.
# (aiohttp rather than httpx: at 1,200 concurrent requests on loopback httpx's
# connection pool took 53 s where aiohttp took 1.2 s.)
_sessions: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession]" = (
    weakref.WeakKeyDictionary()
)


def http_session() -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        connections = int(os.environ.get("RESEARCH_HTTP_MAX_CONNECTIONS", "256"))
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections),
            # No overall timeout: waiting for a pooled connection is back-pressure, not failure.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            headers={"User-Agent": "stepstream-research-assistant/0.1"},
        )
        _sessions[loop] = session
    return session


async def aclose_http_clients() -> None:
    """Close this loop's session (tests and shutdown; a long-lived server never needs it)."""
    session = _sessions.pop(asyncio.get_running_loop(), None)
    if session is not None:
        await session.close()


@dataclass(frozen=True)
class Reply:
    status: int
    retry_after: str | None
    body: bytes
    headers: Mapping[str, str]


async def _get(url: str, params: dict[str, str], settings: ApiSettings) -> Reply:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=settings.timeout_s)
    async with http_session().get(url, params=params, timeout=timeout) as response:
        body = await response.read()
        return Reply(response.status, response.headers.get("Retry-After"), body, dict(response.headers))


def parse_retry_after(value: str | None, default: float = 1.0) -> float:
    """Retry-After as seconds: delay-seconds (fractions tolerated) or an HTTP-date."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return default


def _plain(text: str) -> str:
    """Search snippets carry HTML highlight markup and arXiv text hard line breaks: flatten both."""
    return " ".join(html.unescape(_TAGS.sub("", text)).split())


def _wikipedia_request(s: ApiSettings, query: str) -> tuple[str, dict[str, str]]:
    params = {"action": "query", "list": "search", "srsearch": query, "format": "json"}
    params["srlimit"] = str(s.max_results)
    return f"{s.wikipedia_url}/w/api.php", params


def _wikipedia_hits(s: ApiSettings, body: bytes) -> list[Hit]:
    data = json.loads(body)
    if "error" in data:  # MediaWiki reports API errors with status 200
        raise ValueError(f"wikipedia: {data['error'].get('info', data['error'])}")
    return [
        Hit(
            source="wikipedia",
            title=item["title"],
            snippet=_plain(item.get("snippet", "")),
            url=f"{s.wikipedia_url}/wiki/{quote(item['title'].replace(' ', '_'))}",
        )
        for item in data.get("query", {}).get("search", [])
    ]


def _arxiv_request(s: ApiSettings, query: str) -> tuple[str, dict[str, str]]:
    params = {"search_query": f"all:{query}", "start": "0", "max_results": str(s.max_results)}
    return f"{s.arxiv_url}/api/query", params


def _arxiv_hits(s: ApiSettings, body: bytes) -> list[Hit]:
    # Expat (Python >= 3.11 bundles >= 2.4.1) refuses entity-expansion bombs from a hostile feed.
    feed = ET.fromstring(body)
    return [
        Hit(
            source="arxiv",
            title=_plain(entry.findtext(f"{_ATOM}title", "")),
            snippet=_plain(entry.findtext(f"{_ATOM}summary", "")),
            url=entry.findtext(f"{_ATOM}id", ""),
        )
        for entry in feed.iter(f"{_ATOM}entry")
    ]


_Request = Callable[[ApiSettings, str], tuple[str, dict[str, str]]]
_Parse = Callable[[ApiSettings, bytes], list[Hit]]
_APIS: dict[str, tuple[_Request, _Parse]] = {
    "wikipedia": (_wikipedia_request, _wikipedia_hits),
    "arxiv": (_arxiv_request, _arxiv_hits),
}


def _failed(
    record: SearchRecord, status: Literal["rate_limited", "error"], error: str
) -> tuple[list[Hit], SearchRecord]:
    record["status"], record["error"] = status, error
    return [], record


async def search(source: str, query: str, settings: ApiSettings) -> tuple[list[Hit], SearchRecord]:
    """Search one source, retrying a 429 after its Retry-After at most `max_retries` times.

    Never raises for the API's sake: a failed search is recorded and the answer is
    written from whatever the other searches found.
    """
    request, parse = _APIS[source]
    url, params = request(settings, query)
    record = SearchRecord(source=source, query=query, status="ok", attempts=0, http_429=0, hits=0, error="")
    while True:
        record["attempts"] += 1
        try:
            async with api_slot(source):
                reply = await _get(url, params, settings)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return _failed(record, "error", f"{type(exc).__name__}: {exc}")
        # Every answer tells the shared budget what the API has left; a 429 pauses the key.
        await learn_from_api(source, reply.status, reply.headers)
        if reply.status == 429:
            record["http_429"] += 1
            wait = parse_retry_after(reply.retry_after)
            if record["attempts"] > settings.max_retries or wait > settings.max_retry_wait_s:
                return _failed(record, "rate_limited", f"HTTP 429, Retry-After {wait:g} s")
            # Back off outside api_slot: a waiting task must not hold a share of the budget.
            await asyncio.sleep(wait)
            continue
        if reply.status != 200:
            return _failed(record, "error", f"HTTP {reply.status}")
        try:
            hits = parse(settings, reply.body)
        except (ValueError, KeyError, TypeError, ET.ParseError) as exc:
            return _failed(record, "error", f"{type(exc).__name__}: {exc}")
        record["hits"] = len(hits)
        return hits, record
