"""Spans and metrics of rate-limit acquires, on both sides of the sidecar.

Caller side (any limiter, in-process or sidecar): a span `acquire <key>`
covers the decision and the wait for the reserved slot; counters of tokens
granted and refused and a histogram of waits go with it. Sidecar side: each
traced acquire gets a SERVER span `acquire <key>` with the decision, under
its caller's span: a unary Acquire's caller context comes in the call's
metadata, and each acquire sent over the shared AcquireStream carries its own
in the message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from stepstream.ratelimiter.types import Decision
from stepstream.telemetry import Telemetry, current
from stepstream.telemetry.propagation import carrier_of, context_of

if TYPE_CHECKING:
    from stepstream.ratelimiter.client.base import Grant

# Where an acquire span hangs when the caller's context holds no better parent: a server
# running graphs sets it to find the span of the graph task the acquire is made from.
parent_context: Callable[[], Context | None] | None = None

_WAIT_BUCKETS = (0.0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


def _decision_attributes(decision: Decision) -> dict[str, str | float | bool]:
    return {
        "stepstream.ratelimit.granted": decision.granted,
        "stepstream.ratelimit.wait_s": decision.wait_s,
        "stepstream.ratelimit.retry_after_s": decision.retry_after_s,
        "stepstream.ratelimit.mode": decision.mode.name.lower(),
    }


class LimiterTelemetry:
    def __init__(self, telemetry: Telemetry) -> None:
        provider = telemetry.tracer_provider
        self.tracer = provider.get_tracer("stepstream.ratelimiter") if provider is not None else None
        self.granted = self.refused = self.waits = None
        if telemetry.meter_provider is not None:
            meter = telemetry.meter_provider.get_meter("stepstream.ratelimiter")
            self.granted = meter.create_counter(
                "stepstream.ratelimit.tokens.granted", unit="{token}", description="Tokens granted to callers"
            )
            self.refused = meter.create_counter(
                "stepstream.ratelimit.tokens.refused",
                unit="{token}",
                description="Tokens refused (no slot within the caller's timeout)",
            )
            self.waits = meter.create_histogram(
                "stepstream.ratelimit.wait",
                unit="s",
                description="Time a granted caller waited for its reserved slot",
                explicit_bucket_boundaries_advisory=_WAIT_BUCKETS,
            )

    # -- caller side ----------------------------------------------------------------------
    async def acquire(self, key: str, cost: int, take: Callable[[], Awaitable[Grant]]) -> Grant:
        """Run `take` (decide, then wait for the slot) inside an acquire span, and count the outcome."""
        from stepstream.ratelimiter.client.base import RateLimitRefused

        span = None
        token = None
        if self.tracer is not None:
            parent = parent_context() if parent_context is not None else None
            span = self.tracer.start_span(
                f"acquire {key}",
                context=parent,
                attributes={"stepstream.ratelimit.key": key, "stepstream.ratelimit.cost": cost},
            )
            # Current while deciding, so the call to the sidecar carries this span's context.
            token = otel_context.attach(trace.set_span_in_context(span))
        try:
            grant = await take()
            if span is not None:
                mode = grant.mode.name.lower()
                span.set_attributes(
                    {"stepstream.ratelimit.wait_s": grant.waited_s, "stepstream.ratelimit.mode": mode}
                )
        except RateLimitRefused as exc:
            if self.refused is not None:
                self.refused.add(cost, {"key": key})
            if span is not None:
                span.set_attribute("stepstream.ratelimit.retry_after_s", exc.retry_after_s)
                _fail(span, exc)
            raise
        except Exception as exc:
            if span is not None:
                _fail(span, exc)
            raise
        finally:
            if token is not None:
                otel_context.detach(token)
            if span is not None:
                span.end()
        if self.granted is not None and self.waits is not None:
            self.granted.add(cost, {"key": key, "mode": grant.mode.name.lower()})
            self.waits.record(grant.waited_s, {"key": key})
        return grant

    # -- sidecar side ---------------------------------------------------------------------
    def stream_item_span(self, key: str, cost: int, carrier: dict[str, str]) -> Span | None:
        """A SERVER span for one acquire of an AcquireStream, under the caller's span it names."""
        if self.tracer is None or not carrier:
            return None
        return self._server_span(key, cost, "AcquireStream", context_of(carrier))

    def call_span(self, key: str, cost: int) -> Span | None:
        """A SERVER span for a unary Acquire, under the caller's span (the call's current context)."""
        if self.tracer is None or not trace.get_current_span().get_span_context().is_valid:
            return None
        return self._server_span(key, cost, "Acquire", None)

    def _server_span(self, key: str, cost: int, method: str, parent: Context | None) -> Span | None:
        assert self.tracer is not None
        span = self.tracer.start_span(
            f"acquire {key}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": "stepstream.v1.RateLimiterService",
                "rpc.method": method,
                "stepstream.ratelimit.key": key,
                "stepstream.ratelimit.cost": cost,
            },
        )
        return span if span.is_recording() else None

    @staticmethod
    def end_item_span(span: Span, decision: Decision | None, error: BaseException | None = None) -> None:
        if decision is not None:
            span.set_attributes(_decision_attributes(decision))
        if error is not None:
            _fail(span, error)
        span.end()

    @classmethod
    def end_item_span_when_done(cls, span: Span, future: asyncio.Future[Decision]) -> None:
        if future.cancelled():  # the caller went away before its turn
            span.set_attribute("stepstream.ratelimit.cancelled", True)
            span.end()
        elif (error := future.exception()) is not None:
            cls.end_item_span(span, None, error)
        else:
            cls.end_item_span(span, future.result())


def _fail(span: Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_attribute("error.type", type(exc).__name__)
    span.set_status(Status(StatusCode.ERROR, str(exc)))


_cached: tuple[Telemetry | None, LimiterTelemetry | None] = (None, None)


def for_process() -> LimiterTelemetry | None:
    """The acquire telemetry of the process's current telemetry; None when it is off."""
    global _cached
    telemetry = current()
    if _cached[0] is not telemetry:
        built = LimiterTelemetry(telemetry) if telemetry is not None and telemetry.enabled else None
        _cached = (telemetry, built)
    return _cached[1]


def outgoing_carrier() -> dict[str, str]:
    """W3C headers of the current span for a message to the sidecar; {} when tracing is off."""
    observed = for_process()
    if observed is None or observed.tracer is None:
        return {}
    carrier: dict[str, str] = carrier_of()
    return carrier
