"""The inspector's read-only routes (/inspector/...): the overview (once, or as a live SSE
stream), a run's timeline and trace, and the rate limits. The page at /ui/ calls them with the
same credentials as every other route (headers only); each is scoped to the caller's tenant.
The shapes are docs/inspector.md's "Endpoints"."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stepstream.server.core.inspector.model import Overview
from stepstream.server.core.jsonio import dumps
from stepstream.server.http.common import core_of, json, owner_of

# Seconds between heartbeat comments on the overview stream (it sends data every second, so
# this only matters while the database cannot be read).
HEARTBEAT_SECONDS = 5.0


def iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat()


def iso_or_none(seconds: float | None) -> str | None:
    return None if seconds is None else iso(seconds)


def overview_json(overview: Overview) -> dict[str, Any]:
    return {
        "at": iso(overview.at),
        "runs_per_second": overview.runs_per_second,
        "queued": overview.queued,
        "running": overview.running,
        "replicas": [
            {
                "name": r.name,
                "started_at": iso(r.started_at),
                "heartbeat_at": iso(r.heartbeat_at),
                "alive": r.alive,
                "draining": r.draining,
                "running": r.running,
                "queued": r.queued,
                "leases": r.leases,
            }
            for r in overview.replicas
        ],
        "graphs": [
            {
                "graph_id": g.graph_id,
                "running": g.running,
                "queued": g.queued,
                "finished_last_minute": g.finished_last_minute,
                "errors_last_minute": g.errors_last_minute,
            }
            for g in overview.graphs
        ],
        "errors": [
            {
                "run_id": e.run_id,
                "thread_id": e.thread_id,
                "graph_id": e.graph_id,
                "error": e.error,
                "at": iso(e.at),
            }
            for e in overview.errors
        ],
    }


class _Frames:
    """SSE frames of overviews, each encoded once per tick and tenant however many watch."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[int, bytes]] = {}

    def frame(self, owner: str, overview: Overview) -> bytes:
        cached = self._cache.get(owner)
        if cached is None or cached[0] != overview.tick:
            body = f"event: overview\r\ndata: {dumps(overview_json(overview))}\r\n\r\n".encode()
            cached = self._cache[owner] = (overview.tick, body)
        return cached[1]


_FRAMES = _Frames()


async def config(request: Request) -> Response:
    core = core_of(request)
    settings = core.settings
    return json(
        {
            "replica": settings.replica,
            "auth_required": bool(settings.auth_file or settings.jwt_keys_file),
            "jaeger_ui_url": settings.jaeger_ui_url or None,
        }
    )


async def overview(request: Request) -> Response:
    return json(overview_json(await core_of(request).inspector.overview(owner_of(request))))


async def overview_stream(request: Request) -> Response:
    core, owner = core_of(request), owner_of(request)

    async def frames() -> AsyncIterator[bytes]:
        # Ends when the client goes: sse-starlette cancels this generator, which unsubscribes.
        async for item in core.inspector.watch_overview(owner):
            yield _FRAMES.frame(owner, item)

    return EventSourceResponse(frames(), ping=HEARTBEAT_SECONDS)


ROUTES = [
    Route("/inspector/config", config, methods=["GET"]),
    Route("/inspector/overview", overview, methods=["GET"]),
    Route("/inspector/overview/stream", overview_stream, methods=["GET"]),
]
