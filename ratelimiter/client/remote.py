"""The sidecar over gRPC, with leases for high-rate keys and a configured fault mode.

When the sidecar cannot be reached, `on_unavailable` decides: "closed" raises
LimiterUnavailable (no call goes out unlimited), "local" grants from a
conservative in-process budget, each limit divided by `expected_replicas`
(limits learnt from the sidecar, or `fallback_limits` if it was never
reached). After a failure the sidecar is tried again every `retry_s`, and
used again as soon as it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

import grpc
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status

from stepstream.ratelimiter.backends.memory import MemoryBackend
from stepstream.ratelimiter.client.base import Limiter, LimiterRequestError, LimiterUnavailable
from stepstream.ratelimiter.client.local import LocalLimiter
from stepstream.ratelimiter.client.stream import AcquireStream, StreamItemError
from stepstream.ratelimiter.config import LimiterSettings, LimitSpec, Shape, parse_limit
from stepstream.ratelimiter.servicer import SHAPE_OF, STORE_UNAVAILABLE
from stepstream.ratelimiter.servicer import duration as _duration
from stepstream.ratelimiter.types import Decision, LimitState, Mode, Priority
from stepstream.telemetry import current as current_telemetry
from stepstream.telemetry.propagation import client_interceptors
from stepstream.v1 import ratelimit_pb2 as pb
from stepstream.v1 import ratelimit_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
_NS = 1_000_000_000
# Codes that mean "the sidecar could not answer", as opposed to an answer.
# Reconnect quickly to a sidecar that restarted (gRPC's default backoff starts at 1 s
# and grows to 120 s, far longer than a pod restart).
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
_UNREACHABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}


def _seconds(d: Any) -> float:
    return float(d.seconds + d.nanos / _NS)


def _priority(priority: Priority) -> pb.Priority.ValueType:
    return cast("pb.Priority.ValueType", int(priority))


def _decision(resp: pb.AcquireResponse | pb.AcquireLeaseResponse) -> Decision:
    mode = Mode(resp.mode) if resp.mode else Mode.SHARED
    if resp.outcome == pb.ACQUIRE_OUTCOME_GRANTED:
        grant_id = resp.grant_id if isinstance(resp, pb.AcquireResponse) else ""
        return Decision(True, _seconds(resp.wait), 0.0, _seconds(resp.granted_at), mode, grant_id)
    return Decision(False, 0.0, _seconds(resp.retry_after), 0.0, mode)


def _spec_of(lim: pb.Limit) -> LimitSpec:
    shape = SHAPE_OF.get(lim.shape, Shape.GCRA)
    phase = _seconds(lim.phase) if lim.HasField("phase") else None
    return LimitSpec(
        lim.key, lim.rate, _seconds(lim.period), int(lim.burst), lim.unit, shape, _seconds(lim.margin), phase
    )


def _store_closed(err: grpc.aio.AioRpcError) -> bool:
    """The sidecar answered that it fails closed without its store (ErrorInfo STORE_UNAVAILABLE)."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    if status is None:
        return False
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info) and info.reason == STORE_UNAVAILABLE:
            return True
    return False


class _LeasePool:
    """Tokens of the current lease of one key, handed out locally in arrival order."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.lock = asyncio.Lock()
        self.lease_id = ""
        self.remaining = 0
        self.used = 0
        self.start = 0.0
        self.expires = 0.0
        self.granted_at = 0.0
        self.mode = Mode.SHARED


class RemoteLimiter(Limiter):
    def __init__(
        self,
        target: str,
        *,
        on_unavailable: Literal["closed", "local"] = "closed",
        expected_replicas: int = 1,
        fallback_limits: Mapping[str, Any] | None = None,
        leases: Mapping[str, int] | None = None,
        lease_ttl_s: float = 10.0,
        retry_s: float = 1.0,
        rpc_margin_s: float = 5.0,
        transport: Literal["stream", "unary"] = "stream",
        sidecar_horizon_s: float = 0.25,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.target = target
        # TLS (and a client certificate for mTLS) when the sidecar is not on loopback, and
        # credentials (e.g. an x-api-key) sent with every call.
        self._credentials = credentials
        self._metadata = tuple(metadata)
        # The sidecar's reserve_ahead: how far ahead it may have granted slots.
        self.sidecar_horizon_s = sidecar_horizon_s
        self._outage_started = False
        # "stream": acquires share one AcquireStream call (cheapest per grant);
        # "unary": one Acquire call each.
        self.transport = transport
        self.on_unavailable = on_unavailable
        self.expected_replicas = expected_replicas
        self.lease_ttl_s = lease_ttl_s
        self.retry_s = retry_s
        # The RPC deadline is the caller's timeout plus this: the sidecar may hold a
        # queued caller until its slot is near, and must still be able to answer.
        self.rpc_margin_s = rpc_margin_s
        self._limits: dict[str, LimitSpec] = {
            k: parse_limit(k, v, "fallback_limits") for k, v in (fallback_limits or {}).items()
        }
        self._pools = {key: _LeasePool(size) for key, size in (leases or {}).items()}
        # One channel per event loop: grpc.aio channels belong to the loop that made them.
        self._channels: dict[
            asyncio.AbstractEventLoop, tuple[grpc.aio.Channel, pb_grpc.RateLimiterServiceStub]
        ] = {}
        self._streams: dict[asyncio.AbstractEventLoop, AcquireStream] = {}
        self._down_until = 0.0
        self._local: LocalLimiter | None = None
        self._local_keys: frozenset[str] = frozenset()

    def _acquire_stream(self) -> AcquireStream:
        loop = asyncio.get_running_loop()
        stream = self._streams.get(loop)
        if stream is None or stream.broken is not None:
            stream = self._streams[loop] = AcquireStream(self._stub(), self._metadata)
        return stream

    def _stub(self) -> pb_grpc.RateLimiterServiceStub:
        loop = asyncio.get_running_loop()
        entry = self._channels.get(loop)
        if entry is None:
            # Unary calls carry the caller's trace context in their metadata; the shared
            # AcquireStream carries it per message instead (client/stream.py).
            interceptors = client_interceptors(current_telemetry(), untraced_methods=("AcquireStream",))
            if self._credentials is None:
                channel = grpc.aio.insecure_channel(
                    self.target, options=_CHANNEL_OPTIONS, interceptors=interceptors
                )
            else:
                channel = grpc.aio.secure_channel(
                    self.target, self._credentials, options=_CHANNEL_OPTIONS, interceptors=interceptors
                )
            entry = self._channels[loop] = (channel, pb_grpc.RateLimiterServiceStub(channel))
        return entry[1]

    def limit_of(self, key: str) -> LimitSpec | None:
        return self._limits.get(key)

    async def limits(self) -> dict[str, LimitSpec]:
        """The sidecar's declared limits (remembered for the local fallback budget)."""
        resp = await self._stub().ListLimits(pb.ListLimitsRequest(), timeout=5.0, metadata=self._metadata)
        for lim in resp.limits:
            self._limits[lim.key] = _spec_of(lim)
        return dict(self._limits)

    async def describe_limits(self) -> list[tuple[LimitSpec, LimitState]]:
        """ListLimits, then DescribeLimit of every key at once; LimiterUnavailable if the
        sidecar cannot be reached."""
        stub = self._stub()
        try:
            listed = await stub.ListLimits(pb.ListLimitsRequest(), timeout=5.0, metadata=self._metadata)
            answers = await asyncio.gather(
                *(
                    stub.DescribeLimit(
                        pb.DescribeLimitRequest(key=lim.key), timeout=5.0, metadata=self._metadata
                    )
                    for lim in listed.limits
                )
            )
        except grpc.aio.AioRpcError as err:
            raise LimiterUnavailable(
                f"rate-limit sidecar {self.target}: {err.code().name}: {err.details()}"
            ) from err
        out = []
        for answer in answers:
            state = LimitState(
                available=answer.available,
                full_in_s=_seconds(answer.full_in),
                paused_for_s=_seconds(answer.paused_for),
                waiting=answer.waiting,
                mode=Mode.LOCAL if answer.mode == pb.BUDGET_MODE_LOCAL else Mode.SHARED,
                granted_per_s=answer.granted_per_second,
                waited_per_s=answer.waited_per_second,
                granted_total=answer.granted_total,
                waited_total=answer.waited_total,
            )
            out.append((_spec_of(answer.limit), state))
        return out

    # ---- the fault mode -------------------------------------------------------------

    def _unreachable(self, err: BaseException) -> None:
        if time.monotonic() >= self._down_until:
            self._outage_started = True
            reason = err.code().name if isinstance(err, grpc.aio.AioRpcError) else str(err)
            log.warning(
                "rate-limit sidecar %s unreachable (%s): failing %s", self.target, reason, self.on_unavailable
            )
        self._down_until = time.monotonic() + self.retry_s

    def _fallback(self, key: str) -> LocalLimiter:
        if self.on_unavailable == "closed":
            raise LimiterUnavailable(f"rate-limit sidecar {self.target} is unreachable")
        if key not in self._limits:
            raise LimiterUnavailable(
                f"rate-limit sidecar {self.target} is unreachable and {key!r} has no known limit"
            )
        if self._local is None or self._local_keys != frozenset(self._limits):
            scaled = {k: s.scaled(self.expected_replicas) for k, s in self._limits.items()}
            self._local = LocalLimiter(LimiterSettings(limits=scaled))
            self._local_keys = frozenset(self._limits)
        if self._outage_started:
            # Slots the sidecar reserved before it went away are still ahead: the
            # local budget starts empty once they have started (no burst on top).
            self._outage_started = False
            backend = self._local.core.backend
            if isinstance(backend, MemoryBackend):
                for spec in self._local.limits.values():
                    backend.empty(spec, int(self.sidecar_horizon_s * 1e9))
        return self._local

    async def _local_decision(self, key: str, cost: int, timeout: float, priority: Priority) -> Decision:
        return await self._local_decision_many([(key, cost)], timeout, priority)

    async def _local_decision_many(
        self, items: Sequence[tuple[str, int]], timeout: float, priority: Priority
    ) -> Decision:
        local = self._fallback(items[0][0])
        for key, _ in items[1:]:
            self._fallback(key)
        # A cost above the smaller local burst is capped: better a slightly cheap
        # grant while cut off than a call that can never pass.
        capped = [(key, min(cost, local.limits[key].burst)) for key, cost in items]
        decision = await local.decide_many(capped, timeout, priority)
        return Decision(
            decision.granted,
            decision.wait_s,
            decision.retry_after_s,
            decision.granted_at,
            Mode.LOCAL,
            decision.grant_id,
        )

    # ---- acquire ----------------------------------------------------------------------

    async def decide_many(
        self, items: Sequence[tuple[str, int]], timeout: float, priority: Priority
    ) -> Decision:
        if len(items) == 1:
            return await self.decide(items[0][0], items[0][1], timeout, priority)
        if time.monotonic() < self._down_until:
            return await self._local_decision_many(items, timeout, priority)
        if not self._limits:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self.limits()
        (key, cost), rest = items[0], items[1:]
        request = pb.AcquireRequest(
            key=key,
            cost=cost,
            max_wait=_duration(timeout),
            priority=_priority(priority),
            also=[pb.KeyCost(key=k, cost=n) for k, n in rest],
        )
        try:
            if self.transport == "stream":
                return _decision(await self._acquire_stream().acquire(request, timeout + self.rpc_margin_s))
            resp = await self._stub().Acquire(
                request, timeout=timeout + self.rpc_margin_s, metadata=self._metadata
            )
            return _decision(resp)
        except StreamItemError as err:
            if err.code == code_pb2.UNAVAILABLE:
                raise LimiterUnavailable(err.message) from err
            raise LimiterRequestError(code_pb2.Code.Name(err.code), err.message) from err
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.UNAVAILABLE and _store_closed(err):
                raise LimiterUnavailable(err.details() or "rate-limit store unavailable") from err
            if err.code() not in _UNREACHABLE:
                raise LimiterRequestError(err.code().name, err.details() or "") from err
            self._unreachable(err)
            return await self._local_decision_many(items, timeout, priority)
        except (TimeoutError, ConnectionError) as err:
            self._unreachable(err)
            return await self._local_decision_many(items, timeout, priority)

    async def decide(self, key: str, cost: int, timeout: float, priority: Priority) -> Decision:
        if time.monotonic() < self._down_until:
            return await self._local_decision(key, cost, timeout, priority)
        if not self._limits:
            # Learn the limits while the sidecar is up: for the day it is not, and to
            # know which are windows (a caller woken past their margin takes a new slot).
            try:
                await self.limits()
            except grpc.aio.AioRpcError as err:
                if err.code() not in _UNREACHABLE:
                    raise
        pool = self._pools.get(key)
        try:
            if pool is not None:
                return await self._from_lease(pool, key, cost, timeout, priority)
            request = pb.AcquireRequest(
                key=key, cost=cost, max_wait=_duration(timeout), priority=_priority(priority)
            )
            if self.transport == "stream":
                return _decision(await self._acquire_stream().acquire(request, timeout + self.rpc_margin_s))
            resp = await self._stub().Acquire(
                request, timeout=timeout + self.rpc_margin_s, metadata=self._metadata
            )
            return _decision(resp)
        except StreamItemError as err:
            if err.code == code_pb2.UNAVAILABLE:  # the sidecar fails closed without its store
                raise LimiterUnavailable(err.message) from err
            raise LimiterRequestError(code_pb2.Code.Name(err.code), err.message) from err
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.UNAVAILABLE and _store_closed(err):
                raise LimiterUnavailable(err.details() or "rate-limit store unavailable") from err
            if err.code() not in _UNREACHABLE:
                raise LimiterRequestError(err.code().name, err.details() or "") from err
            self._unreachable(err)
            return await self._local_decision(key, cost, timeout, priority)
        except (TimeoutError, ConnectionError) as err:
            # The stream broke or the sidecar did not answer in time.
            self._unreachable(err)
            return await self._local_decision(key, cost, timeout, priority)

    async def _from_lease(
        self, pool: _LeasePool, key: str, cost: int, timeout: float, priority: Priority
    ) -> Decision:
        async with pool.lock:  # FIFO: asyncio.Lock wakes waiters in arrival order
            now = time.monotonic()
            if pool.lease_id and pool.remaining >= cost and now < pool.expires:
                return self._take(pool, cost, now)
            await self._release(pool)
            size = max(pool.size, cost)
            if key in self._limits:
                size = min(size, self._limits[key].burst)
            request = pb.AcquireLeaseRequest(
                key=key,
                tokens=size,
                max_wait=_duration(timeout),
                priority=_priority(priority),
                ttl=_duration(self.lease_ttl_s),
            )
            resp = await self._stub().AcquireLease(
                request, timeout=timeout + self.rpc_margin_s, metadata=self._metadata
            )
            if resp.outcome != pb.ACQUIRE_OUTCOME_GRANTED:
                return _decision(resp)
            now = time.monotonic()
            pool.lease_id = resp.lease_id
            pool.remaining = int(resp.tokens)
            pool.used = 0
            pool.start = now + _seconds(resp.wait)
            pool.expires = now + _seconds(resp.expires_in)
            pool.granted_at = _seconds(resp.granted_at)
            pool.mode = Mode(resp.mode) if resp.mode else Mode.SHARED
            return self._take(pool, cost, now)

    @staticmethod
    def _take(pool: _LeasePool, cost: int, now: float) -> Decision:
        pool.remaining -= cost
        pool.used += cost
        wait = max(pool.start - now, 0.0)
        return Decision(True, wait, 0.0, pool.granted_at, pool.mode)

    async def _release(self, pool: _LeasePool) -> None:
        if not pool.lease_id:
            return
        lease_id, used = pool.lease_id, pool.used
        pool.lease_id, pool.remaining = "", 0
        if time.monotonic() < pool.expires and used < pool.size:
            try:
                await self._stub().ReleaseLease(
                    pb.ReleaseLeaseRequest(lease_id=lease_id, used=used), timeout=2.0, metadata=self._metadata
                )
            except grpc.aio.AioRpcError as err:
                log.debug("lease %s not released: %s", lease_id, err.code())

    # ---- feedback ---------------------------------------------------------------------

    async def report_throttled(self, key: str, retry_after_s: float = 0.0) -> float:
        if self._local is not None and key in self._limits:
            # Pause the fallback budget too, in case the sidecar goes away during the pause.
            await self._local.report_throttled(key, retry_after_s)
        try:
            request = pb.ReportThrottledRequest(key=key, retry_after=_duration(retry_after_s))
            resp = await self._stub().ReportThrottled(request, timeout=2.0, metadata=self._metadata)
        except grpc.aio.AioRpcError as err:
            if err.code() not in _UNREACHABLE:
                raise
            self._unreachable(err)
            return await self._fallback(key).report_throttled(key, retry_after_s)
        return _seconds(resp.paused_for)

    async def reconcile(self, key: str, reserved: int, actual: int, grant_id: str = "") -> None:
        try:
            request = pb.ReconcileRequest(key=key, reserved=reserved, actual=actual, grant_id=grant_id)
            await self._stub().Reconcile(request, timeout=2.0, metadata=self._metadata)
        except grpc.aio.AioRpcError as err:
            if err.code() not in _UNREACHABLE:
                raise
            self._unreachable(err)
            if self.on_unavailable == "local" and key in self._limits:
                await self._fallback(key).reconcile(key, reserved, actual, grant_id)

    async def observe_remaining(self, key: str, remaining: int, reset_after_s: float | None = None) -> int:
        request = pb.ObserveRemainingRequest(key=key, remaining=max(remaining, 0))
        if reset_after_s is not None:
            request.reset_after.CopyFrom(_duration(reset_after_s))
        try:
            resp = await self._stub().ObserveRemaining(request, timeout=2.0, metadata=self._metadata)
        except grpc.aio.AioRpcError as err:
            if err.code() not in _UNREACHABLE:
                raise
            self._unreachable(err)
            if self.on_unavailable == "local" and key in self._limits:
                local = self._fallback(key)
                return await local.observe_remaining(key, remaining // self.expected_replicas, reset_after_s)
            return 0
        return int(resp.consumed)

    async def close(self) -> None:
        for pool in self._pools.values():
            async with pool.lock:
                await self._release(pool)
        loop = asyncio.get_running_loop()
        stream = self._streams.pop(loop, None)
        if stream is not None:
            await stream.close()
        entry = self._channels.pop(loop, None)
        if entry is not None:
            await entry[0].close()
        if self._local is not None:
            await self._local.close()


def open_limiter(
    address: str | None = None, settings: LimiterSettings | None = None, **remote: Any
) -> Limiter:
    """The limiter a server uses: its sidecar at `address` if one is configured,
    else the in-process limiter over `settings` (the single-machine default)."""
    if address:
        return RemoteLimiter(address, **remote)
    if settings is None:
        raise ValueError("either a sidecar address or the limiter settings are needed")
    return LocalLimiter(settings)
