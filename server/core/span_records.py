"""Spans written whole: the supersteps and tasks of a run, rebuilt from its events.

They open and close as the run's events arrive. The SDK's live spans would do
the same at several times the cost (a lock per change, attribute limits, a
copy when they end) for spans no other code ever touches; on a run of trivial
nodes that was most of what tracing cost. These keep their fields until they
end, then go to the span processors exactly as the SDK's finished spans do.
They belong to a sampled run span and share its sampling decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode

from stepstream.telemetry import Telemetry


class SpanWriter:
    def __init__(self, telemetry: Telemetry, scope_name: str) -> None:
        provider = telemetry.tracer_provider
        assert provider is not None
        self._ids = provider.id_generator
        self._resource = provider.resource
        self._scope = InstrumentationScope(scope_name)
        self._write = telemetry.write_span

    def start(
        self, name: str, parent: SpanContext, attributes: dict[str, Any], start_time: int
    ) -> RecordedSpan:
        context = SpanContext(
            parent.trace_id,
            self._ids.generate_span_id(),
            is_remote=False,
            trace_flags=parent.trace_flags,
            trace_state=parent.trace_state,
        )
        return RecordedSpan(self, name, context, parent, attributes, start_time)

    def write(self, span: RecordedSpan, end_time: int) -> None:
        self._write(
            ReadableSpan(
                name=span.name,
                context=span.context,
                parent=span.parent,
                resource=self._resource,
                attributes=span.attributes,
                events=span.events,
                status=span.status,
                start_time=span.start_time,
                end_time=end_time,
                instrumentation_scope=self._scope,
            )
        )


class RecordedSpan:
    """The part of the Span API the run tracer uses: attributes, events, status, end."""

    __slots__ = ("_writer", "attributes", "context", "events", "name", "parent", "start_time", "status")

    def __init__(
        self,
        writer: SpanWriter,
        name: str,
        context: SpanContext,
        parent: SpanContext,
        attributes: dict[str, Any],
        start_time: int,
    ) -> None:
        self._writer: SpanWriter | None = writer
        self.name = name
        self.context = context
        self.parent = parent
        self.attributes = attributes
        self.start_time = start_time
        self.events: list[Event] = []
        self.status = Status(StatusCode.UNSET)

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def add_event(self, name: str, attributes: Mapping[str, Any], timestamp: int) -> None:
        self.events.append(Event(name, attributes, timestamp))

    def set_status(self, status: Status) -> None:
        self.status = status

    def end(self, end_time: int) -> None:
        """Write it (once; later calls do nothing)."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.write(self, end_time)

    def as_parent(self) -> Context:
        """A context in which this span is the parent of new spans."""
        return trace.set_span_in_context(NonRecordingSpan(self.context))
