"""The inspector's read-only routes (/inspector/...): the overview (once, or as a live SSE
stream), a run's timeline and trace, and the rate limits. The page at /ui/ calls them with the
same credentials as every other route (headers only); each is scoped to the caller's tenant.
The shapes are docs/inspector.md's "Endpoints"."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stepstream.server.core.inspector.model import Overview
from stepstream.server.core.inspector.timeline import Timeline
from stepstream.server.core.jsonio import dumps
from stepstream.server.core.start import RUN_ID
from stepstream.server.core.tracing import trace_id_of
from stepstream.server.http import shapes
from stepstream.server.http.common import core_of, json, owner_of
from stepstream.server.http.errors import HttpError
from stepstream.server.http.shapes import iso

# Seconds between heartbeat comments on the overview stream (it sends data every second, so
# this only matters while the database cannot be read).
HEARTBEAT_SECONDS = 5.0


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
        self._cache: dict[str, tuple[tuple[int, float], bytes]] = {}

    def frame(self, owner: str, overview: Overview) -> bytes:
        # The read it came from: its tick, and its time (ticks of two cores in one process differ).
        read = (overview.tick, overview.at)
        cached = self._cache.get(owner)
        if cached is None or cached[0] != read:
            body = f"event: overview\r\ndata: {dumps(overview_json(overview))}\r\n\r\n".encode()
            cached = self._cache[owner] = (read, body)
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


def run_id_of(request: Request) -> str:
    """The path's run id: a server's UUID or a caller's id (1-64 of [A-Za-z0-9._:-]), else 422."""
    run_id: str = request.path_params["run_id"]
    if not RUN_ID.match(run_id):
        raise HttpError(422, f"run id {run_id[:80]!r} is not a run id: 1-64 of A-Z a-z 0-9 . _ : -")
    return run_id


def timeline_json(timeline: Timeline) -> dict[str, Any]:
    run = timeline.run
    return {
        "run": {
            **shapes.run(run),
            "trace_id": trace_id_of(run.trace_context) or None,
            "replica": timeline.replica,
        },
        "supersteps": [
            {
                "step": row.step,
                "started_at": iso(row.started_at),
                "ended_at": iso(row.ended_at),
                "checkpoint_id": row.checkpoint_id,
                "tasks": [
                    {
                        "id": t.id,
                        "name": t.name,
                        "path": list(t.path),
                        "started_at": iso(t.started_at),
                        "ended_at": iso(t.ended_at),
                        "status": str(t.status),
                        "error": t.error,
                        "retries": t.retries,
                        "replica": t.replica,
                    }
                    for t in row.tasks
                ],
            }
            for row in timeline.supersteps
        ],
        "takeovers": [
            {"at": iso(t.at), "from_replica": t.from_replica, "to_replica": t.to_replica}
            for t in timeline.takeovers
        ],
        "interrupts": [{"id": i.id, "value": i.value, "step": i.step} for i in timeline.interrupts],
    }


async def timeline(request: Request) -> Response:
    core, owner = core_of(request), owner_of(request)
    return json(timeline_json(await core.inspector.timeline(owner, run_id_of(request))))


async def limits(request: Request) -> Response:
    described = await core_of(request).inspector.limits()
    return json(
        {
            "ratelimiter": described.address,
            "mode": str(described.kind),
            "limits": [
                {
                    "key": v.key,
                    "kind": v.kind,
                    "shape": v.shape,
                    "rate": v.rate,
                    "burst": v.burst,
                    "window_s": v.window_s,
                    "unit": v.unit,
                    "granted_per_s": v.granted_per_s,
                    "waits_per_s": v.waits_per_s,
                    "granted_total": v.granted_total,
                    "waited_total": v.waited_total,
                    "queue": v.queue,
                    "available": v.available,
                    "paused_until": iso(v.paused_until),
                    "budget": v.budget,
                }
                for v in described.limits
            ],
        }
    )


async def trace(request: Request) -> Response:
    core, owner = core_of(request), owner_of(request)
    found = await core.inspector.trace(owner, run_id_of(request))
    return json(
        {
            "trace_id": found.trace_id,
            "jaeger_ui_url": found.jaeger_ui_url,
            "spans": [
                {
                    "span_id": s.span_id,
                    "parent_id": s.parent_id,
                    "name": s.name,
                    "service": s.service,
                    "replica": s.replica,
                    "start_us": s.start_us,
                    "duration_us": s.duration_us,
                    "attributes": s.attributes,
                }
                for s in found.spans
            ],
        }
    )


ROUTES = [
    Route("/inspector/config", config, methods=["GET"]),
    Route("/inspector/overview", overview, methods=["GET"]),
    Route("/inspector/overview/stream", overview_stream, methods=["GET"]),
    Route("/inspector/runs/{run_id}/timeline", timeline, methods=["GET"]),
    Route("/inspector/runs/{run_id}/trace", trace, methods=["GET"]),
    Route("/inspector/limits", limits, methods=["GET"]),
]
