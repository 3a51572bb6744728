"""Trace context across process boundaries: gRPC metadata (W3C traceparent) and stored text.

Incoming calls: a small server interceptor makes the caller's context (from
the call's metadata, through the configured propagators: W3C trace context by
default) current for the call, so what the call starts (a run, a rate-limit
decision) is a child of the caller's span. It opens no span of its own and does
not wrap the handler: grpc.aio runs the interceptor in the call's own task, so
the context it sets lasts exactly as long as the call. (opentelemetry-
instrumentation-grpc's server interceptor adds a span per call and a wrapper
around every streamed message; on a trivial run that was a good part of what
tracing cost.)

Outgoing calls: opentelemetry-instrumentation-grpc's client interceptors (a
CLIENT span per call, its context in the metadata). Where a context must
outlive a call (a run row in the database, one item of a stream shared by many
callers) it is written as the W3C headers in a small mapping, so any process
can continue the trace from it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.trace import SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from stepstream.telemetry.setup import Telemetry

W3C = TraceContextTextMapPropagator()

# Probes and reflection are not worth a span each.
_UNTRACED_SERVICES = ("/grpc.health.", "/grpc.reflection.")


def carrier_of(context: Context | None = None) -> dict[str, str]:
    """The W3C headers (traceparent, tracestate) of `context` (default: the current one); {} if none."""
    carrier: dict[str, str] = {}
    W3C.inject(carrier, context)
    return carrier


def context_of(carrier: Mapping[str, str]) -> Context:
    """A context whose parent is the span the headers name (an empty context if they name none)."""
    return W3C.extract(dict(carrier))


def span_context_of(carrier: Mapping[str, str]) -> SpanContext | None:
    span_context = trace.get_current_span(context_of(carrier)).get_span_context()
    return span_context if span_context.is_valid else None


class CallerContextInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Makes the caller's trace context, sent in the call's metadata, current for the call."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        metadata = handler_call_details.invocation_metadata
        if metadata:
            # Not detached: the call's task, and the context with it, ends with the call.
            otel_context.attach(propagate.extract(dict(metadata)))
        return await continuation(handler_call_details)


def server_interceptors(telemetry: Telemetry | None) -> list[grpc.aio.ServerInterceptor]:
    """Interceptors for a grpc.aio server of a process whose tracing is on (none when it is off)."""
    if telemetry is None or telemetry.tracer_provider is None:
        return []
    return [CallerContextInterceptor()]


def _traced(untraced_methods: tuple[str, ...]) -> Callable[[Any], bool]:
    """The client interceptors' filter: True for calls that get a span. It runs on every call, so it
    is one string test (the library's composable filters cost tens of microseconds a call)."""

    def traced(details: Any) -> bool:
        method = details.method
        if isinstance(method, bytes):  # grpc.aio client call details carry bytes
            method = method.decode()
        return not method.startswith(_UNTRACED_SERVICES) and method.rpartition("/")[2] not in untraced_methods

    return traced


def client_interceptors(telemetry: Telemetry | None, untraced_methods: tuple[str, ...] = ()) -> list[Any]:
    """Interceptors for a grpc.aio channel: a CLIENT span per call, its context sent in the metadata.

    `untraced_methods` (e.g. a long-lived stream shared by many callers) get no
    span; they carry their callers' contexts in their messages instead.
    """
    if telemetry is None or telemetry.tracer_provider is None:
        return []
    return list(
        aio_client_interceptors(  # type: ignore[no-untyped-call]
            tracer_provider=telemetry.tracer_provider, filter_=_traced(untraced_methods)
        )
    )
