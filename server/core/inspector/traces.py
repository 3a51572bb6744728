"""A run's trace, read by the server from Jaeger's HTTP query API (`/api/traces/<id>`).

Browsers never call Jaeger: the inspector checks that the caller owns the run first, then
fetches the trace and hands back its spans flattened (parent ids, microseconds, attributes), so
the page can draw the waterfall of run, supersteps, tasks and rate-limit waits across replicas.
The local Jaeger (`make jaeger`) has this API but no web UI; a UI base URL, when set, is only
linked to.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx

from stepstream.server.core.errors import NotFound, Unavailable

# Seconds a read of Jaeger may take.
QUERY_TIMEOUT_SECONDS = 5.0


@dataclasses.dataclass(frozen=True)
class SpanView:
    span_id: str
    parent_id: str | None
    name: str
    service: str
    replica: str | None
    start_us: int
    duration_us: int
    attributes: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class TraceView:
    trace_id: str
    jaeger_ui_url: str | None
    spans: tuple[SpanView, ...]


def ui_link(ui_url: str | None, trace_id: str) -> str | None:
    return f"{ui_url.rstrip('/')}/trace/{trace_id}" if ui_url and trace_id else None


def _tags(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {t["key"]: t.get("value") for t in items or () if "key" in t}


def spans_of(data: dict[str, Any]) -> list[SpanView]:
    """Jaeger's trace JSON (one entry of `data`) as spans, oldest first."""
    processes = {
        pid: (p.get("serviceName", ""), _tags(p.get("tags")))
        for pid, p in (data.get("processes") or {}).items()
    }
    spans = []
    for span in data.get("spans") or ():
        service, resource = processes.get(span.get("processID", ""), ("", {}))
        attributes = _tags(span.get("tags"))
        parents = [r["spanID"] for r in span.get("references") or () if r.get("refType") == "CHILD_OF"]
        replica = resource.get("service.instance.id") or attributes.get("stepstream.replica")
        spans.append(
            SpanView(
                span_id=span["spanID"],
                parent_id=parents[0] if parents else None,
                name=span.get("operationName", ""),
                service=service,
                replica=str(replica) if replica else None,
                start_us=int(span.get("startTime", 0)),
                duration_us=int(span.get("duration", 0)),
                attributes=attributes,
            )
        )
    return sorted(spans, key=lambda s: (s.start_us, s.span_id))


class JaegerQuery:
    """Reads traces from Jaeger's query API at `url` (e.g. http://127.0.0.1:16686)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._client: httpx.AsyncClient | None = None

    async def trace(self, trace_id: str) -> list[SpanView]:
        """The trace's spans; NotFound when Jaeger holds none, Unavailable when it cannot be read."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=QUERY_TIMEOUT_SECONDS)
        try:
            reply = await self._client.get(f"{self.url}/api/traces/{trace_id}")
        except httpx.HTTPError as exc:
            raise Unavailable(f"Jaeger's query API at {self.url} cannot be reached: {exc}") from exc
        if reply.status_code == 404:
            raise NotFound(f"Jaeger has no trace {trace_id} (yet: spans reach it in batches)")
        if reply.status_code != 200:
            raise Unavailable(f"Jaeger's query API at {self.url} answered {reply.status_code}")
        try:
            data = reply.json().get("data") or []
        except ValueError as exc:
            raise Unavailable(
                f"Jaeger's query API at {self.url} answered something that is not JSON"
            ) from exc
        if not data:
            raise NotFound(f"Jaeger has no trace {trace_id} (yet: spans reach it in batches)")
        return spans_of(data[0])

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
