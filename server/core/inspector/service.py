"""The inspector as the doors call it: one per replica, built by the core."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from stepstream.ratelimiter.client.base import Limiter
from stepstream.server.core.errors import NotFound, Unavailable
from stepstream.server.core.events import RunEvent
from stepstream.server.core.inspector import limits
from stepstream.server.core.inspector.heartbeat import Heartbeat
from stepstream.server.core.inspector.model import InspectorStore, Overview
from stepstream.server.core.inspector.overview import OverviewHub
from stepstream.server.core.inspector.timeline import Timeline, build_timeline
from stepstream.server.core.inspector.traces import JaegerQuery, TraceView, ui_link
from stepstream.server.core.ports import Store
from stepstream.server.core.tracing import trace_id_of

# Stored events read per query while a timeline is rebuilt.
EVENTS_PAGE = 2_000


class Inspector:
    def __init__(
        self,
        store: InspectorStore,
        runs: Store,
        replica: str,
        heartbeat_seconds: float,
        graphs: Callable[[], tuple[str, ...]],
        running: Callable[[], int],
        leases: Callable[[], int],
        draining: Callable[[], bool],
        limiter: Limiter | None = None,
        limiter_address: str | None = None,
        jaeger_query_url: str | None = None,
        jaeger_ui_url: str | None = None,
    ) -> None:
        self.replica = replica
        self._runs = runs
        self._limiter = limiter
        self._limiter_address = limiter_address
        self._jaeger = JaegerQuery(jaeger_query_url) if jaeger_query_url else None
        self.jaeger_ui_url = jaeger_ui_url
        self.heartbeat = Heartbeat(store, replica, heartbeat_seconds, graphs, running, leases, draining)
        self.overviews = OverviewHub(store.overview_rows)

    async def start(self) -> None:
        # The first beat before serving: a replica is listed as soon as it answers.
        await self.heartbeat.beat_once()
        self.heartbeat.start()

    async def stop(self) -> None:
        await self.overviews.close()
        await self.heartbeat.stop()
        if self._jaeger is not None:
            await self._jaeger.close()

    async def overview(self, owner: str) -> Overview:
        return await self.overviews.current(owner)

    def watch_overview(self, owner: str) -> AsyncIterator[Overview]:
        return self.overviews.watch(owner)

    async def timeline(self, owner: str, run_id: str) -> Timeline:
        """The run's supersteps, tasks, takeovers and interrupts; NotFound for another owner's run."""
        run = await self._runs.get_run(owner, run_id)
        events: list[RunEvent] = []
        while True:
            rows = await self._runs.events_after(run_id, events[-1].seq if events else 0, EVENTS_PAGE)
            events += (RunEvent.from_row(run_id, seq, kind, body) for seq, kind, body in rows)
            if len(rows) < EVENTS_PAGE:
                break
        return build_timeline(run, events)

    async def limits(self) -> limits.Limits:
        """Every rate limit with its live state, from the limiter itself (Unavailable if it
        cannot be asked)."""
        return await limits.describe(self._limiter, self._limiter_address)

    async def trace(self, owner: str, run_id: str) -> TraceView:
        """The run's trace from Jaeger, once the run is known to be the owner's (NotFound
        otherwise, before Jaeger is asked); Unavailable when Jaeger is not set up or away."""
        run = await self._runs.get_run(owner, run_id)
        trace_id = trace_id_of(run.trace_context)
        if not trace_id:
            raise NotFound(f"run {run_id!r} has no trace (tracing was off, or the run was not sampled)")
        if self._jaeger is None:
            raise Unavailable(
                "no Jaeger query API is configured: set --jaeger-query (STEPSTREAM_JAEGER_QUERY_URL)"
            )
        spans = await self._jaeger.trace(trace_id)
        return TraceView(trace_id, ui_link(self.jaeger_ui_url, trace_id), tuple(spans))
