"""Proto ⇄ domain: the only place that knows both shapes."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

from google.protobuf import timestamp_pb2

from stepstream.server.core import records as rec
from stepstream.server.core.errors import InvalidArgument
from stepstream.server.core.events import EventFilter, RunEvent
from stepstream.server.core.jsonio import dumps, parse_field
from stepstream.server.core.start import CommandRequest, OptionsRequest, StartRunRequest
from stepstream.server.core.tracing import trace_id_of
from stepstream.v1 import assistants_pb2, common_pb2, events_pb2, runs_pb2, sessions_pb2

RUN_STATUS = {
    rec.RunStatus.QUEUED: runs_pb2.RUN_STATUS_QUEUED,
    rec.RunStatus.RUNNING: runs_pb2.RUN_STATUS_RUNNING,
    rec.RunStatus.SUCCEEDED: runs_pb2.RUN_STATUS_SUCCEEDED,
    rec.RunStatus.INTERRUPTED: runs_pb2.RUN_STATUS_INTERRUPTED,
    rec.RunStatus.FAILED: runs_pb2.RUN_STATUS_FAILED,
    rec.RunStatus.CANCELLED: runs_pb2.RUN_STATUS_CANCELLED,
}
RUN_STATUS_NAME = {v: k for k, v in RUN_STATUS.items()}
SESSION_STATUS = {
    rec.SessionStatus.IDLE: sessions_pb2.SESSION_STATUS_IDLE,
    rec.SessionStatus.BUSY: sessions_pb2.SESSION_STATUS_BUSY,
    rec.SessionStatus.INTERRUPTED: sessions_pb2.SESSION_STATUS_INTERRUPTED,
    rec.SessionStatus.ERROR: sessions_pb2.SESSION_STATUS_ERROR,
}
BUSY_POLICY = {
    common_pb2.BUSY_POLICY_UNSPECIFIED: rec.BusyPolicy.REJECT,
    common_pb2.BUSY_POLICY_REJECT: rec.BusyPolicy.REJECT,
    common_pb2.BUSY_POLICY_ENQUEUE: rec.BusyPolicy.ENQUEUE,
    common_pb2.BUSY_POLICY_INTERRUPT: rec.BusyPolicy.INTERRUPT,
    common_pb2.BUSY_POLICY_ROLLBACK: rec.BusyPolicy.ROLLBACK,
}
BUSY_POLICY_PB = {v: k for k, v in BUSY_POLICY.items() if k != common_pb2.BUSY_POLICY_UNSPECIFIED}
EVENT_KIND: dict[int, str] = {
    events_pb2.EVENT_KIND_SUPERSTEPS: "supersteps",
    events_pb2.EVENT_KIND_TASKS: "tasks",
    events_pb2.EVENT_KIND_MESSAGE_CHUNKS: "message_chunks",
    events_pb2.EVENT_KIND_CUSTOM: "custom",
    events_pb2.EVENT_KIND_VALUES: "values",
}


def timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if seconds is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def iso_timestamp(text: str) -> timestamp_pb2.Timestamp | None:
    if not text:
        return None
    return timestamp(datetime.datetime.fromisoformat(text).timestamp())


def event_filter(kinds: Iterable[int], subgraphs: bool) -> EventFilter:
    names = []
    for kind in kinds:
        if kind not in EVENT_KIND:
            raise InvalidArgument("event_kinds", f"unknown event kind {kind}")
        names.append(EVENT_KIND[kind])
    return EventFilter.of(names, subgraphs)


def event_pb(event: RunEvent) -> events_pb2.RunEvent:
    return events_pb2.RunEvent(
        run_id=event.run_id,
        seq=event.seq,
        time=timestamp(event.time),
        namespace=list(event.namespace),
        **_oneof(event.kind, event.data),
    )


def _oneof(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {kind: data}


def interrupts_pb(items: Iterable[dict[str, Any]]) -> list[common_pb2.Interrupt]:
    return [common_pb2.Interrupt(**i) for i in items]


def options_pb(options: rec.RunOptions) -> runs_pb2.RunOptions:
    return runs_pb2.RunOptions(
        max_concurrency=options.max_concurrency,
        busy_policy=BUSY_POLICY_PB.get(options.busy_policy, common_pb2.BUSY_POLICY_REJECT),
        recursion_limit=options.recursion_limit,
        configurable_json=dumps(options.configurable) if options.configurable else "",
        metadata_json=dumps(options.metadata) if options.metadata else "",
        interrupt_before=list(options.interrupt_before),
        interrupt_after=list(options.interrupt_after),
    )


def run_pb(run: rec.Run) -> runs_pb2.Run:
    return runs_pb2.Run(
        run_id=run.run_id,
        session_id=run.session_id,
        graph_id=run.graph_id,
        status=RUN_STATUS[run.status],
        created_at=timestamp(run.created_at),
        started_at=timestamp(run.started_at),
        ended_at=timestamp(run.ended_at),
        attempt=run.attempt,
        last_seq=run.last_seq,
        values_json=run.values_json,
        interrupts=interrupts_pb(run.interrupts),
        error_type=run.error_type,
        error_message=run.error_message,
        options=options_pb(run.options),
        assistant_id=run.assistant_id,
        assistant_version=run.assistant_version,
        context_json=run.context_json or "",
        trace_id=trace_id_of(run.trace_context),
    )


def session_pb(session: rec.Session) -> sessions_pb2.Session:
    return sessions_pb2.Session(
        session_id=session.session_id,
        graph_id=session.graph_id,
        status=SESSION_STATUS.get(session.status, sessions_pb2.SESSION_STATUS_UNSPECIFIED),
        metadata_json=dumps(session.metadata),
        created_at=timestamp(session.created_at),
        updated_at=timestamp(session.updated_at),
    )


def state_pb(state: dict[str, Any]) -> sessions_pb2.SessionState:
    fields = dict(state)
    fields["created_at"] = iso_timestamp(fields["created_at"])
    return sessions_pb2.SessionState(**fields)


def options_request(options: runs_pb2.RunOptions, field: str = "options") -> OptionsRequest:
    if options.busy_policy not in BUSY_POLICY:
        raise InvalidArgument(f"{field}.busy_policy", f"unknown policy {options.busy_policy}")
    return OptionsRequest(
        max_concurrency=options.max_concurrency,
        busy_policy=BUSY_POLICY[options.busy_policy],
        recursion_limit=options.recursion_limit,
        configurable_json=options.configurable_json,
        metadata_json=options.metadata_json,
        interrupt_before=tuple(options.interrupt_before),
        interrupt_after=tuple(options.interrupt_after),
    )


def command_request(command: common_pb2.Command) -> CommandRequest:
    return CommandRequest(
        resume_json=command.resume_json,
        resume_by_interrupt_id_json=dict(command.resume_by_interrupt_id_json),
        update_json=command.update_json,
        goto=tuple(command.goto),
    )


def start_run_request(owner: str, request: runs_pb2.StartRunRequest) -> StartRunRequest:
    return StartRunRequest(
        owner=owner,
        graph_id=request.graph_id,
        session_id=request.session_id,
        input_json=request.input_json,
        command=command_request(request.command) if request.HasField("command") else None,
        options=options_request(request.options),
        run_id=request.run_id,
        on_completion=ON_COMPLETION.get(request.on_completion, rec.OnCompletion.KEEP),
        assistant_id=request.assistant_id,
        context_json=request.context_json,
        webhook=request.webhook,
    )


ON_COMPLETION = {
    runs_pb2.ON_COMPLETION_UNSPECIFIED: rec.OnCompletion.KEEP,
    runs_pb2.ON_COMPLETION_KEEP: rec.OnCompletion.KEEP,
    runs_pb2.ON_COMPLETION_DELETE: rec.OnCompletion.DELETE,
}
SESSION_STATUS_NAME = {pb: status for status, pb in SESSION_STATUS.items()}


def session_query(request: sessions_pb2.ListSessionsRequest) -> rec.SessionQuery:
    """The filters and order of a ListSessions request (paging is the page token's)."""
    metadata = parse_field("metadata_json", request.metadata_json, object_only=True)
    unknown = [s for s in request.statuses if s not in SESSION_STATUS_NAME]
    if unknown:
        raise InvalidArgument("statuses", f"unknown session status {unknown[0]}")
    if request.sort_by not in (
        sessions_pb2.SESSION_SORT_BY_UNSPECIFIED,
        sessions_pb2.SESSION_SORT_BY_CREATED_AT,
        sessions_pb2.SESSION_SORT_BY_UPDATED_AT,
    ):
        raise InvalidArgument("sort_by", f"unknown sort {request.sort_by}")
    return rec.SessionQuery(
        metadata=metadata or {},
        statuses=tuple(SESSION_STATUS_NAME[s] for s in request.statuses),
        graph_id=request.graph_id,
        sort=rec.SessionSort.UPDATED_AT
        if request.sort_by == sessions_pb2.SESSION_SORT_BY_UPDATED_AT
        else rec.SessionSort.CREATED_AT,
        ascending=request.ascending,
    )


def assistant_pb(assistant: rec.Assistant) -> assistants_pb2.Assistant:
    return assistants_pb2.Assistant(
        assistant_id=assistant.assistant_id,
        graph_id=assistant.graph_id,
        name=assistant.name,
        description=assistant.description,
        config_json=dumps(assistant.config),
        context_json=dumps(assistant.context),
        metadata_json=dumps(assistant.metadata),
        version=assistant.version,
        created_at=timestamp(assistant.created_at),
        updated_at=timestamp(assistant.updated_at),
        is_default=assistant.is_default,
    )
