"""The thin gRPC layer: proto ⇄ domain, and limiter errors ⇄ status codes.

Nothing here decides anything; see `core.LimiterCore`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NoReturn, TypeVar, cast

import grpc
from google.protobuf import any_pb2, duration_pb2, timestamp_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from opentelemetry.trace import Span

from stepstream.ratelimiter.config import LimitSpec, Shape
from stepstream.ratelimiter.core import LimiterCore
from stepstream.ratelimiter.errors import (
    InvalidRequest,
    LimiterError,
    StoreUnavailable,
    TooManyWaiters,
    UnknownKey,
)
from stepstream.ratelimiter.telemetry import LimiterTelemetry
from stepstream.ratelimiter.telemetry import for_process as limiter_telemetry
from stepstream.ratelimiter.types import Decision, Mode, Priority
from stepstream.v1 import ratelimit_pb2 as pb
from stepstream.v1 import ratelimit_pb2_grpc as pb_grpc

T = TypeVar("T")
_NS = 1_000_000_000


def duration(seconds: float) -> duration_pb2.Duration:
    ns = max(round(seconds * _NS), 0)
    return duration_pb2.Duration(seconds=ns // _NS, nanos=ns % _NS)


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    ns = round(seconds * _NS)
    return timestamp_pb2.Timestamp(seconds=ns // _NS, nanos=ns % _NS)


def seconds_of(value: duration_pb2.Duration, field: str) -> float:
    if value.seconds < 0 or value.nanos < 0:
        raise InvalidRequest(field, "must not be negative")
    return value.seconds + value.nanos / _NS


_PRIORITIES = {0: Priority.NORMAL, **{int(p): p for p in Priority}}


def priority_of(value: int) -> Priority:
    priority = _PRIORITIES.get(value)
    if priority is None:
        raise InvalidRequest("priority", f"unknown priority {value}")
    return priority


def _mode(mode: Mode) -> pb.BudgetMode.ValueType:
    return cast("pb.BudgetMode.ValueType", int(mode))


_SHAPES: dict[Shape, pb.LimitShape.ValueType] = {
    Shape.GCRA: pb.LIMIT_SHAPE_GCRA,
    Shape.SLIDING: pb.LIMIT_SHAPE_SLIDING,
    Shape.FIXED: pb.LIMIT_SHAPE_FIXED,
}
SHAPE_OF: dict[int, Shape] = {int(v): k for k, v in _SHAPES.items()}


def limit_message(spec: LimitSpec) -> pb.Limit:
    message = pb.Limit(
        key=spec.key,
        rate=spec.rate,
        period=duration(spec.period_s),
        burst=spec.burst,
        unit=spec.unit,
        shape=_SHAPES[spec.shape],
    )
    if spec.is_window:
        message.margin.CopyFrom(duration(spec.margin_s))
    if spec.phase_s is not None:
        message.phase.CopyFrom(duration(spec.phase_s))
    return message


ERROR_DOMAIN = "ratelimiter.stepstream.dev"
STORE_UNAVAILABLE = "STORE_UNAVAILABLE"


def _pack(
    message: error_details_pb2.BadRequest | error_details_pb2.RetryInfo | error_details_pb2.ErrorInfo,
) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def status_of(exc: LimiterError) -> status_pb2.Status:
    """The google.rpc.Status (code, message, details) a limiter error is answered with."""
    if isinstance(exc, InvalidRequest):
        violation = error_details_pb2.BadRequest.FieldViolation(field=exc.field, description=exc.reason)
        details = [_pack(error_details_pb2.BadRequest(field_violations=[violation]))]
        return status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=str(exc), details=details)
    if isinstance(exc, UnknownKey):
        return status_pb2.Status(code=code_pb2.NOT_FOUND, message=str(exc))
    if isinstance(exc, TooManyWaiters):
        retry = _pack(error_details_pb2.RetryInfo(retry_delay=duration(exc.retry_after_s)))
        return status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=str(exc), details=[retry])
    if isinstance(exc, StoreUnavailable):
        # ErrorInfo tells clients the sidecar itself answered (failing closed by
        # configuration), as opposed to a sidecar that could not be reached.
        info = _pack(error_details_pb2.ErrorInfo(reason=STORE_UNAVAILABLE, domain=ERROR_DOMAIN))
        return status_pb2.Status(code=code_pb2.UNAVAILABLE, message=str(exc), details=[info])
    return status_pb2.Status(code=code_pb2.INTERNAL, message=str(exc))


async def _answer(context: grpc.aio.ServicerContext[object, object], call: Callable[[], Awaitable[T]]) -> T:
    try:
        return await call()
    except LimiterError as exc:
        await _abort(context, exc)


async def _abort(context: grpc.aio.ServicerContext[object, object], exc: LimiterError) -> NoReturn:
    await context.abort_with_status(rpc_status.to_status(status_of(exc)))
    raise AssertionError("abort_with_status returns only by raising")


def _acquire_args(request: pb.AcquireRequest) -> tuple[str, int, float, Priority]:
    max_wait = request.max_wait
    seconds = seconds_of(max_wait, "max_wait") if max_wait.ByteSize() else 0.0
    return request.key, request.cost or 1, seconds, priority_of(request.priority)


def _items(request: pb.AcquireRequest) -> list[tuple[str, int]]:
    """Every (key, cost) of an acquire over several keys."""
    return [(request.key, request.cost or 1), *((kc.key, kc.cost or 1) for kc in request.also)]


def _stream_error(request_id: int, exc: LimiterError) -> pb.AcquireStreamResponse:
    status = status_of(exc)
    return pb.AcquireStreamResponse(id=request_id, error_code=status.code, error_message=status.message)


def acquire_response(decision: Decision) -> pb.AcquireResponse:
    if decision.granted:
        response = pb.AcquireResponse(outcome=pb.ACQUIRE_OUTCOME_GRANTED, mode=_mode(decision.mode))
        if decision.wait_s > 0:
            response.wait.CopyFrom(duration(decision.wait_s))
        response.granted_at.CopyFrom(timestamp(decision.granted_at))
        response.grant_id = decision.grant_id
        return response
    return pb.AcquireResponse(
        outcome=pb.ACQUIRE_OUTCOME_REFUSED,
        retry_after=duration(decision.retry_after_s),
        mode=_mode(decision.mode),
    )


class RateLimiterServicer(pb_grpc.RateLimiterServiceServicer):
    def __init__(self, core: LimiterCore) -> None:
        self.core = core
        # Spans for acquires when tracing is on.
        self.telemetry = limiter_telemetry()

    async def Acquire(
        self, request: pb.AcquireRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.AcquireResponse:
        # The hot path: no closure, no helper coroutine (each costs a few µs per grant).
        span = None
        if self.telemetry is not None:
            span = self.telemetry.call_span(request.key, request.cost or 1)
        try:
            key, cost, max_wait, priority = _acquire_args(request)
            remaining = context.time_remaining()
            if remaining is not None:
                # Never hold a caller past its own RPC deadline: it could not use the slot.
                max_wait = max(min(max_wait, remaining - 0.05), 0.0)
            if request.also:
                decision = await self.core.acquire_many(_items(request), max_wait, priority)
            else:
                decision = await self.core.acquire(key, cost, max_wait, priority)
        except LimiterError as exc:
            if span is not None:
                LimiterTelemetry.end_item_span(span, None, exc)
            await _abort(context, exc)
        if span is not None:
            LimiterTelemetry.end_item_span(span, decision)
        return acquire_response(decision)

    async def AcquireStream(
        self,
        request_iterator: AsyncIterator[pb.AcquireStreamRequest],
        context: grpc.aio.ServicerContext[object, object],
    ) -> AsyncIterator[pb.AcquireStreamResponse]:
        loop = asyncio.get_running_loop()
        out: asyncio.Queue[pb.AcquireStreamResponse | None] = asyncio.Queue()
        waiting: set[asyncio.Future[Decision]] = set()
        core = self.core
        observed = self.telemetry

        def answer(request_id: int, span: Span | None, future: asyncio.Future[Decision]) -> None:
            waiting.discard(future)
            if span is not None:
                LimiterTelemetry.end_item_span_when_done(span, future)
            if future.cancelled():
                return
            exc = future.exception()
            if isinstance(exc, LimiterError):
                out.put_nowait(_stream_error(request_id, exc))
            elif exc is not None:
                out.put_nowait(_stream_error(request_id, LimiterError(f"internal error: {exc!r}")))
            else:
                out.put_nowait(
                    pb.AcquireStreamResponse(id=request_id, acquire=acquire_response(future.result()))
                )

        async def read() -> None:
            try:
                async for item in request_iterator:
                    span = None
                    if observed is not None and item.trace_context:
                        span = observed.stream_item_span(
                            item.acquire.key, item.acquire.cost or 1, dict(item.trace_context)
                        )
                    # No task per acquire: a decision now, or a future with a callback.
                    try:
                        if item.acquire.also:
                            _, _, max_wait, priority = _acquire_args(item.acquire)
                            result: Decision | asyncio.Future[Decision] = loop.create_task(
                                core.acquire_many(_items(item.acquire), max_wait, priority)
                            )
                        else:
                            result = core.submit(*_acquire_args(item.acquire))
                    except LimiterError as exc:
                        if span is not None:
                            LimiterTelemetry.end_item_span(span, None, exc)
                        out.put_nowait(_stream_error(item.id, exc))
                        continue
                    if isinstance(result, Decision):
                        if span is not None:
                            LimiterTelemetry.end_item_span(span, result)
                        out.put_nowait(pb.AcquireStreamResponse(id=item.id, acquire=acquire_response(result)))
                    else:
                        waiting.add(result)
                        result.add_done_callback(functools.partial(answer, item.id, span))
                if waiting:
                    await asyncio.wait(set(waiting))
            finally:
                out.put_nowait(None)

        reader = loop.create_task(read())
        try:
            while (response := await out.get()) is not None:
                yield response
        finally:
            reader.cancel()
            for future in list(waiting):
                future.cancel()

    async def AcquireLease(
        self, request: pb.AcquireLeaseRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.AcquireLeaseResponse:
        async def call() -> pb.AcquireLeaseResponse:
            if request.tokens < 1:
                raise InvalidRequest("tokens", "must be at least 1")
            lease = await self.core.acquire_lease(
                request.key,
                request.tokens,
                seconds_of(request.max_wait, "max_wait"),
                priority_of(request.priority),
                seconds_of(request.ttl, "ttl") or None,
            )
            if isinstance(lease, Decision):
                return pb.AcquireLeaseResponse(
                    outcome=pb.ACQUIRE_OUTCOME_REFUSED,
                    retry_after=duration(lease.retry_after_s),
                    mode=_mode(lease.mode),
                )
            return pb.AcquireLeaseResponse(
                outcome=pb.ACQUIRE_OUTCOME_GRANTED,
                lease_id=lease.lease_id,
                tokens=lease.tokens,
                wait=duration(lease.wait_s),
                expires_in=duration(lease.expires_in_s),
                granted_at=timestamp(lease.granted_at),
                mode=_mode(lease.mode),
            )

        return await _answer(context, call)

    async def ReleaseLease(
        self, request: pb.ReleaseLeaseRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ReleaseLeaseResponse:
        async def call() -> pb.ReleaseLeaseResponse:
            return pb.ReleaseLeaseResponse(
                returned=await self.core.release_lease(request.lease_id, request.used)
            )

        return await _answer(context, call)

    async def Reconcile(
        self, request: pb.ReconcileRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ReconcileResponse:
        async def call() -> pb.ReconcileResponse:
            await self.core.reconcile(request.key, request.reserved, request.actual, request.grant_id)
            return pb.ReconcileResponse()

        return await _answer(context, call)

    async def ReportThrottled(
        self, request: pb.ReportThrottledRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ReportThrottledResponse:
        async def call() -> pb.ReportThrottledResponse:
            paused = await self.core.report_throttled(
                request.key, seconds_of(request.retry_after, "retry_after")
            )
            return pb.ReportThrottledResponse(paused_for=duration(paused))

        return await _answer(context, call)

    async def ObserveRemaining(
        self, request: pb.ObserveRemainingRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ObserveRemainingResponse:
        async def call() -> pb.ObserveRemainingResponse:
            reset = (
                seconds_of(request.reset_after, "reset_after") if request.HasField("reset_after") else None
            )
            consumed = await self.core.observe_remaining(request.key, request.remaining, reset)
            return pb.ObserveRemainingResponse(consumed=consumed)

        return await _answer(context, call)

    async def ListLimits(
        self, request: pb.ListLimitsRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ListLimitsResponse:
        return pb.ListLimitsResponse(limits=[limit_message(s) for s in self.core.limits.values()])

    async def DescribeLimit(
        self, request: pb.DescribeLimitRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.DescribeLimitResponse:
        async def call() -> pb.DescribeLimitResponse:
            spec, state = await self.core.describe(request.key)
            return pb.DescribeLimitResponse(
                limit=limit_message(spec),
                available=state.available,
                full_in=duration(state.full_in_s),
                paused_for=duration(state.paused_for_s),
                waiting=state.waiting,
                mode=_mode(state.mode),
                granted_per_second=state.granted_per_s,
                waited_per_second=state.waited_per_s,
                granted_total=state.granted_total,
                waited_total=state.waited_total,
            )

        return await _answer(context, call)
