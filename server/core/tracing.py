"""Traces and metrics of runs, built from the events the executor produces.

One trace per run. Each attempt at executing it is a span `invoke_workflow
<graph>` (the OpenTelemetry GenAI conventions); each superstep is its child,
each task (a node) a child of its superstep, and a subgraph's supersteps hang
under the task that runs the subgraph. Spans open and close as the executor
translates LangGraph's stream, so they time what the run's events report.

The run's trace context is stored with the run (`runs.trace_context`, JSON of
W3C headers): `parent`, the caller's span when the run was created, and
`attempt`, the span of its latest attempt. A replica that resumes the run,
after a crash or a hand-back, starts the new attempt under the same parent and
links it to the previous one: one trace, however many replicas touched it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any

import orjson
from langgraph.config import get_config
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode

from stepstream.ratelimiter import telemetry as limiter_telemetry
from stepstream.server.core import events as ev
from stepstream.server.core import records as rec
from stepstream.server.core.span_records import RecordedSpan, SpanWriter
from stepstream.telemetry import Telemetry, current
from stepstream.telemetry.propagation import carrier_of, context_of, span_context_of

log = logging.getLogger(__name__)


_TRACED_KINDS = frozenset(
    {
        ev.SUPERSTEP_STARTED,
        ev.SUPERSTEP_FINISHED,
        ev.TASK_STARTED,
        ev.TASK_FINISHED,
        ev.TASK_FAILED,
        ev.INTERRUPT_RAISED,
    }
)
# What became of tasks still open when their run stopped, by the run's outcome.
_OPEN_TASK_OUTCOME = {
    rec.RunStatus.INTERRUPTED: "interrupted",
    rec.RunStatus.CANCELLED: "cancelled",
    rec.RunStatus.FAILED: "cancelled",
    rec.RunStatus.SUCCEEDED: "finished",
    rec.RunStatus.QUEUED: "handed_back",
}
_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

_READ_TIMEOUT_S = 2.0


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


async def _awaited(read: Callable[[], Awaitable[int]]) -> int:
    return await read()


# Open task spans by LangGraph task id, so a rate-limit acquire inside a node finds its task.
_task_spans: dict[str, RecordedSpan] = {}


def caller_trace_context() -> str | None:
    """What runs.trace_context starts as: the caller's span when the run is created, if any."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return orjson.dumps({"parent": carrier_of()}).decode()


def _stored(text: str | None) -> dict[str, dict[str, str]]:
    if not text:
        return {}
    try:
        stored = orjson.loads(text)
    except orjson.JSONDecodeError:
        log.warning("ignoring a run's trace context that is not JSON: %.80r", text)
        return {}
    return stored if isinstance(stored, dict) else {}


def trace_id_of(trace_context: str | None) -> str:
    """The W3C trace id (32 hex digits) of a run's stored trace context; "" when it has none."""
    stored = _stored(trace_context)
    for key in ("attempt", "parent"):
        parts = (stored.get(key) or {}).get("traceparent", "").split("-")
        if len(parts) == 4 and len(parts[1]) == 32 and parts[1] != "0" * 32:
            return parts[1]
    return ""


def _task_context() -> otel_context.Context | None:
    """The context of the graph task the calling code runs in (for rate-limit acquire spans)."""
    try:
        task_id = get_config()["configurable"].get("__pregel_task_id")
    except (RuntimeError, KeyError):
        return None
    span = _task_spans.get(task_id) if task_id else None
    return span.as_parent() if span is not None else None


class RunMetrics:
    """Superstep and task durations, runs by outcome, runs queued and running, events streamed."""

    def __init__(self, telemetry: Telemetry) -> None:
        assert telemetry.meter_provider is not None
        meter = telemetry.meter_provider.get_meter("stepstream.server")
        self.superstep_duration = meter.create_histogram(
            "stepstream.superstep.duration",
            unit="s",
            description="Time from a superstep's first task start to its committed checkpoint",
            explicit_bucket_boundaries_advisory=_SECONDS_BUCKETS,
        )
        self.task_duration = meter.create_histogram(
            "stepstream.task.duration",
            unit="s",
            description="Time a graph task (node) ran",
            explicit_bucket_boundaries_advisory=_SECONDS_BUCKETS,
        )
        self.runs_ended = meter.create_counter(
            "stepstream.runs.ended", unit="{run}", description="Run attempts ended, by status"
        )
        self.events_streamed = meter.create_counter(
            "stepstream.events.streamed", unit="{event}", description="Run events sent to clients"
        )
        self._running: Callable[[], int] | None = None
        self._queued: Callable[[], Awaitable[int]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        meter.create_observable_up_down_counter(
            "stepstream.runs.queued",
            callbacks=[self._observe_queued],
            unit="{run}",
            description="Runs waiting in the shared queue for a replica (the database's count)",
        )
        meter.create_observable_up_down_counter(
            "stepstream.runs.running",
            callbacks=[self._observe_running],
            unit="{run}",
            description="Runs executing on this replica",
        )

    def watch(self, running: Callable[[], int], queued: Callable[[], Awaitable[int]]) -> None:
        """Report `running()` and the awaited `queued()` when metrics are collected (call it on the
        event loop the replica runs on)."""
        self._running, self._queued = running, queued
        self._loop = asyncio.get_running_loop()

    def _observe_queued(self, options: CallbackOptions) -> Iterable[Observation]:
        # Collection happens on the exporter's (or the scrape's) thread: the count is read on
        # the replica's loop. Never from the loop itself (a flush at shutdown): it would wait on itself.
        loop, queued = self._loop, self._queued
        if loop is None or queued is None or loop.is_closed() or _on_loop(loop):
            return []
        try:
            depth = asyncio.run_coroutine_threadsafe(_awaited(queued), loop).result(_READ_TIMEOUT_S)
        except Exception as exc:
            log.debug("queued runs not observed: %r", exc)
            return []
        return [Observation(depth)]

    def _observe_running(self, options: CallbackOptions) -> Iterable[Observation]:
        return [] if self._running is None else [Observation(self._running())]


class RunTelemetry:
    """The run tracer and metrics of one replica; None (see `for_replica`) when telemetry is off."""

    def __init__(self, replica: str, telemetry: Telemetry) -> None:
        self.replica = replica
        self.tracer = (
            telemetry.tracer_provider.get_tracer("stepstream.server")
            if telemetry.tracer_provider is not None
            else None
        )
        self.metrics = RunMetrics(telemetry) if telemetry.meter_provider is not None else None
        # Supersteps and tasks are written whole (span_records.py).
        self.writer = SpanWriter(telemetry, "stepstream.server") if self.tracer is not None else None
        if self.tracer is not None:
            limiter_telemetry.parent_context = _task_context

    @classmethod
    def for_replica(cls, replica: str) -> RunTelemetry | None:
        telemetry = current()
        return cls(replica, telemetry) if telemetry is not None and telemetry.enabled else None

    def watch_runs(self, running: Callable[[], int], queued: Callable[[], Awaitable[int]]) -> None:
        """Runs executing on this replica, and runs queued for any (on the running event loop)."""
        if self.metrics is not None:
            self.metrics.watch(running, queued)

    def streamed(self, count: int) -> None:
        if self.metrics is not None:
            self.metrics.events_streamed.add(count)

    def attempt(self, run: rec.Run) -> Attempt:
        return Attempt(self, run)


class _Step:
    __slots__ = ("ns", "span", "started", "step")

    def __init__(self, ns: tuple[str, ...], step: int, span: RecordedSpan | None) -> None:
        self.ns = ns
        self.step = step
        self.span = span
        self.started = time.monotonic()


class Attempt:
    """The spans of one attempt at executing a run, fed the events as the executor makes them."""

    def __init__(self, owner: RunTelemetry, run: rec.Run) -> None:
        self._metrics = owner.metrics
        self._graph = run.graph_id
        self._run_id = run.run_id
        self._stored = _stored(run.trace_context)
        self._steps: dict[tuple[str, ...], _Step] = {}
        self._tasks: dict[str, RecordedSpan] = {}
        self._last_interrupt_ns = 0
        self.span: Span | None = None
        # The run span's context: current while the graph runs.
        self._context = otel_context.Context()
        if owner.tracer is None or owner.writer is None:
            return
        self._writer = owner.writer
        parent = self._stored.get("parent") or self._stored.get("attempt") or {}
        previous = span_context_of(self._stored.get("attempt") or {})
        links = [Link(previous, {"stepstream.link": "previous_attempt"})] if previous else []
        span = owner.tracer.start_span(
            f"invoke_workflow {run.graph_id}",
            context=context_of(parent),
            kind=SpanKind.INTERNAL,
            links=links,
            attributes={
                "gen_ai.operation.name": "invoke_workflow",
                "gen_ai.workflow.name": run.graph_id,
                "gen_ai.conversation.id": run.session_id,
                "stepstream.run.id": run.run_id,
                "stepstream.run.attempt": run.attempt,
                "stepstream.replica": owner.replica,
            },
        )
        # A run outside any sampled trace costs no span work past this point.
        self.span = span if span.is_recording() else None
        self._context = trace.set_span_in_context(span)
        self._span_context = span.get_span_context()

    def stored_context(self) -> str | None:
        """The run's trace context with this attempt's span (runs.trace_context), for whoever
        resumes the run next; None when the attempt has no span."""
        if self.span is None:
            return None
        return orjson.dumps({**self._stored, "attempt": carrier_of(self._context)}).decode()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Make the run span current, so spans opened by the graph's own code join the run's trace."""
        if self.span is None:
            yield
            return
        token = otel_context.attach(self._context)
        try:
            yield
        finally:
            otel_context.detach(token)

    def observe(self, items: Sequence[ev.EventItem]) -> None:
        for kind, ns, data in items:
            if kind not in _TRACED_KINDS:
                continue
            now = time.time_ns()
            if kind == ev.TASK_STARTED:
                self._task_started(ns, data, now)
            elif kind == ev.TASK_FINISHED or kind == ev.TASK_FAILED:
                self._task_ended(kind, data, now)
            elif kind == ev.SUPERSTEP_STARTED:
                self._step_started(ns, data, now)
            elif kind == ev.SUPERSTEP_FINISHED:
                self._step_finished(ns, data, now)
            else:
                self._interrupted(ns, data, now)

    # -- supersteps ---------------------------------------------------------------------------
    def _parent_of(self, ns: tuple[str, ...]) -> SpanContext:
        if ns:
            # A subgraph's namespace ends with "<node>:<task id>" of the task that runs it.
            task = self._tasks.get(ns[-1].rpartition(":")[2])
            if task is not None:
                return task.context
        return self._span_context

    def _step_started(self, ns: tuple[str, ...], data: dict[str, Any], now: int) -> None:
        if ns in self._steps:
            self._close_step(self._steps.pop(ns), now, "superseded")
        span = None
        if self.span is not None:
            attributes: dict[str, Any] = {
                "langgraph.step": data["step"],
                "stepstream.tasks": len(data["tasks"]),
            }
            if ns:
                attributes["langgraph.checkpoint_ns"] = "|".join(ns)
            span = self._writer.start(f"superstep {data['step']}", self._parent_of(ns), attributes, now)
        self._steps[ns] = _Step(ns, data["step"], span)

    def _step_finished(self, ns: tuple[str, ...], data: dict[str, Any], now: int) -> None:
        step = self._steps.pop(ns, None)
        if step is None:
            return
        if self._metrics is not None:
            self._metrics.superstep_duration.record(time.monotonic() - step.started, {"graph": self._graph})
        if step.span is not None:
            step.span.set_attribute("langgraph.checkpoint_id", data["checkpoint_id"])
            step.span.end(now)

    def _close_step(self, step: _Step, now: int, outcome: str) -> None:
        if step.span is not None:
            step.span.set_attribute("stepstream.superstep.outcome", outcome)
            step.span.end(now)

    def _interrupted(self, ns: tuple[str, ...], data: dict[str, Any], now: int) -> None:
        self._last_interrupt_ns = now
        step = self._steps.get(ns)
        span = step.span if step is not None else self.span
        if span is not None:
            ids = [i["interrupt_id"] for i in data.get("interrupts", ())]
            span.add_event("interrupt", {"stepstream.interrupt.ids": ids}, timestamp=now)

    # -- tasks --------------------------------------------------------------------------------
    def _task_started(self, ns: tuple[str, ...], data: dict[str, Any], now: int) -> None:
        if self.span is None:
            return
        task = data["task"]
        step = self._steps.get(ns)
        parent = step.span.context if step is not None and step.span is not None else self._parent_of(ns)
        # The step is its superstep's (the parent span's) attribute.
        attributes = {"langgraph.node": task["node"], "langgraph.task_id": task["task_id"]}
        span = self._writer.start(f"task {task['node']}", parent, attributes, now)
        self._tasks[task["task_id"]] = span
        _task_spans[task["task_id"]] = span

    def _task_ended(self, kind: str, data: dict[str, Any], now: int) -> None:
        task = data["task"]
        failed = kind == ev.TASK_FAILED
        if self._metrics is not None:
            attributes = {
                "graph": self._graph,
                "node": task["node"],
                "outcome": "failed" if failed else "finished",
            }
            self._metrics.task_duration.record(data["duration_seconds"], attributes)
        span = self._tasks.pop(task["task_id"], None)
        _task_spans.pop(task["task_id"], None)
        if span is None:
            return
        if failed:
            span.set_attribute("stepstream.task.outcome", "failed")
            _record_error(span, data["error_type"], data["error_message"], now)
        else:
            span.set_attribute("stepstream.task.outcome", "finished")
        span.end(now)

    # -- the end ------------------------------------------------------------------------------
    def end(self, run: rec.Run, reason: str = "") -> None:
        """The attempt is over: `run` holds its outcome (status QUEUED: handed back to the queue)."""
        now = time.time_ns()
        status = run.status
        if self._metrics is not None:
            self._metrics.runs_ended.add(1, {"graph": self._graph, "status": status})
        outcome = _OPEN_TASK_OUTCOME.get(status, status)
        # An interrupted task ends when its interrupt was raised; others when the run stopped.
        task_end = (
            self._last_interrupt_ns
            if status == rec.RunStatus.INTERRUPTED and self._last_interrupt_ns
            else now
        )
        for task_id, task_span in list(self._tasks.items()):
            _task_spans.pop(task_id, None)
            task_span.set_attribute("stepstream.task.outcome", outcome)
            task_span.end(task_end)
        self._tasks.clear()
        for step in sorted(self._steps.values(), key=lambda s: -len(s.ns)):
            self._close_step(step, now, outcome)
        self._steps.clear()
        span = self.span
        if span is None:
            return
        span.set_attribute(
            "stepstream.run.status", "handed_back" if status == rec.RunStatus.QUEUED else status
        )
        if status == rec.RunStatus.FAILED:
            _record_error(span, run.error_type, run.error_message, now)
        elif status == rec.RunStatus.CANCELLED:
            span.add_event("cancelled", {"stepstream.cancel.reason": reason}, timestamp=now)
        elif status == rec.RunStatus.INTERRUPTED:
            span.set_attribute("stepstream.run.interrupts", len(run.interrupts))
        span.end(now)
        self.span = None


def _record_error(span: Span | RecordedSpan, error_type: str, message: str, now: int) -> None:
    span.set_attribute("error.type", error_type)
    span.add_event("exception", {"exception.type": error_type, "exception.message": message}, timestamp=now)
    span.set_status(Status(StatusCode.ERROR, f"{error_type}: {message}"))
