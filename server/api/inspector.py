"""The InspectorService servicer: proto ⇄ the core's inspector (core/inspector), the same
read-only views the HTTP door serves under /inspector/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from stepstream.ratelimiter.config import Shape
from stepstream.ratelimiter.servicer import duration
from stepstream.server.api import convert
from stepstream.server.api.servicers import Context, _Servicer, owner_of
from stepstream.server.api.status import streaming, unary
from stepstream.server.core.errors import InvalidArgument
from stepstream.server.core.inspector.limits import LimiterKind, Limits
from stepstream.server.core.inspector.model import Overview
from stepstream.server.core.inspector.timeline import TaskStatus, Timeline
from stepstream.server.core.inspector.traces import TraceView
from stepstream.server.core.jsonio import dumps
from stepstream.server.core.start import RUN_ID
from stepstream.v1 import inspector_pb2, inspector_pb2_grpc, ratelimit_pb2

TASK_STATUS = {
    TaskStatus.OK: inspector_pb2.TIMELINE_TASK_STATUS_OK,
    TaskStatus.ERROR: inspector_pb2.TIMELINE_TASK_STATUS_ERROR,
    TaskStatus.INTERRUPTED: inspector_pb2.TIMELINE_TASK_STATUS_INTERRUPTED,
    TaskStatus.RUNNING: inspector_pb2.TIMELINE_TASK_STATUS_RUNNING,
}
LIMITER_KIND = {
    LimiterKind.SIDECAR: inspector_pb2.LIMITER_KIND_SIDECAR,
    LimiterKind.IN_PROCESS: inspector_pb2.LIMITER_KIND_IN_PROCESS,
    LimiterKind.NONE: inspector_pb2.LIMITER_KIND_NONE,
}
BUDGET = {"local": ratelimit_pb2.BUDGET_MODE_LOCAL, "shared": ratelimit_pb2.BUDGET_MODE_SHARED}
SHAPE = {
    Shape.GCRA.value: ratelimit_pb2.LIMIT_SHAPE_GCRA,
    Shape.SLIDING.value: ratelimit_pb2.LIMIT_SHAPE_SLIDING,
    Shape.FIXED.value: ratelimit_pb2.LIMIT_SHAPE_FIXED,
}


def _run_id(run_id: str) -> str:
    if not RUN_ID.match(run_id):
        raise InvalidArgument("run_id", "must be 1-64 characters of A-Z a-z 0-9 . _ : -")
    return run_id


def overview_pb(overview: Overview) -> inspector_pb2.Overview:
    return inspector_pb2.Overview(
        at=convert.timestamp(overview.at),
        runs_per_second=overview.runs_per_second,
        queued=overview.queued,
        running=overview.running,
        replicas=[
            inspector_pb2.ReplicaStatus(
                name=r.name,
                started_at=convert.timestamp(r.started_at),
                heartbeat_at=convert.timestamp(r.heartbeat_at),
                alive=r.alive,
                draining=r.draining,
                running=r.running,
                queued=r.queued,
                leases=r.leases,
            )
            for r in overview.replicas
        ],
        graphs=[
            inspector_pb2.GraphLoad(
                graph_id=g.graph_id,
                running=g.running,
                queued=g.queued,
                finished_last_minute=g.finished_last_minute,
                errors_last_minute=g.errors_last_minute,
            )
            for g in overview.graphs
        ],
        errors=[
            inspector_pb2.RunError(
                run_id=e.run_id,
                session_id=e.thread_id,
                graph_id=e.graph_id,
                error=e.error,
                at=convert.timestamp(e.at),
            )
            for e in overview.errors
        ],
    )


def timeline_pb(timeline: Timeline) -> inspector_pb2.GetRunTimelineResponse:
    return inspector_pb2.GetRunTimelineResponse(
        run=convert.run_pb(timeline.run),
        replica=timeline.replica or "",
        supersteps=[
            inspector_pb2.TimelineSuperstep(
                step=row.step,
                started_at=convert.timestamp(row.started_at),
                ended_at=convert.timestamp(row.ended_at),
                checkpoint_id=row.checkpoint_id or "",
                tasks=[
                    inspector_pb2.TimelineTask(
                        task_id=t.id,
                        node=t.name,
                        namespace=list(t.path),
                        started_at=convert.timestamp(t.started_at),
                        ended_at=convert.timestamp(t.ended_at),
                        status=TASK_STATUS[t.status],
                        error=t.error or "",
                        retries=t.retries,
                        replica=t.replica or "",
                    )
                    for t in row.tasks
                ],
            )
            for row in timeline.supersteps
        ],
        takeovers=[
            inspector_pb2.Takeover(
                at=convert.timestamp(t.at), from_replica=t.from_replica, to_replica=t.to_replica
            )
            for t in timeline.takeovers
        ],
        interrupts=[
            inspector_pb2.TimelineInterrupt(interrupt_id=i.id, value_json=dumps(i.value), step=i.step)
            for i in timeline.interrupts
        ],
    )


def trace_pb(trace: TraceView) -> inspector_pb2.GetRunTraceResponse:
    return inspector_pb2.GetRunTraceResponse(
        trace_id=trace.trace_id,
        jaeger_ui_url=trace.jaeger_ui_url or "",
        spans=[
            inspector_pb2.TraceSpan(
                span_id=s.span_id,
                parent_id=s.parent_id or "",
                name=s.name,
                service=s.service,
                replica=s.replica or "",
                start_us=s.start_us,
                duration_us=s.duration_us,
                attributes_json=dumps(s.attributes),
            )
            for s in trace.spans
        ],
    )


def limits_pb(limits: Limits) -> inspector_pb2.ListLimitStatesResponse:
    return inspector_pb2.ListLimitStatesResponse(
        kind=LIMITER_KIND[limits.kind],
        ratelimiter_address=limits.address or "",
        limits=[
            inspector_pb2.LimitStatus(
                key=v.key,
                shape=SHAPE[v.shape],
                rate=v.rate,
                burst=v.burst,
                window=duration(v.window_s),
                unit=v.unit,
                granted_per_second=v.granted_per_s,
                waited_per_second=v.waits_per_s,
                granted_total=v.granted_total,
                waited_total=v.waited_total,
                queue=v.queue,
                available=v.available,
                paused_until=convert.timestamp(v.paused_until),
                budget=ratelimit_pb2.BUDGET_MODE_LOCAL
                if v.budget == "local"
                else ratelimit_pb2.BUDGET_MODE_SHARED,
            )
            for v in limits.limits
        ],
    )


class InspectorServicer(_Servicer, inspector_pb2_grpc.InspectorServiceServicer):
    @unary
    async def GetOverview(self, request: inspector_pb2.GetOverviewRequest, context: Context) -> Any:
        overview = await self._core.inspector.overview(owner_of(self._core, context))
        return inspector_pb2.GetOverviewResponse(overview=overview_pb(overview))

    @streaming
    async def WatchOverview(
        self, request: inspector_pb2.WatchOverviewRequest, context: Context
    ) -> AsyncIterator[Any]:
        async for overview in self._core.inspector.watch_overview(owner_of(self._core, context)):
            yield inspector_pb2.WatchOverviewResponse(overview=overview_pb(overview))

    @unary
    async def GetRunTimeline(self, request: inspector_pb2.GetRunTimelineRequest, context: Context) -> Any:
        owner = owner_of(self._core, context)
        return timeline_pb(await self._core.inspector.timeline(owner, _run_id(request.run_id)))

    @unary
    async def GetRunTrace(self, request: inspector_pb2.GetRunTraceRequest, context: Context) -> Any:
        owner = owner_of(self._core, context)
        return trace_pb(await self._core.inspector.trace(owner, _run_id(request.run_id)))

    @unary
    async def ListLimitStates(self, request: inspector_pb2.ListLimitStatesRequest, context: Context) -> Any:
        return limits_pb(await self._core.inspector.limits())
