"""The sidecar as a real process (memory back end): the contract, errors, health,
reflection, Envoy's RLS, leases, and the client's choice when the sidecar is unreachable."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from stepstream.ratelimiter import envoy
from stepstream.ratelimiter.client import (
    LimiterRequestError,
    LimiterUnavailable,
    RateLimitRefused,
    RemoteLimiter,
)
from stepstream.ratelimiter.types import Mode, Priority
from stepstream.v1 import ratelimit_pb2 as pb
from stepstream.v1 import ratelimit_pb2_grpc as pb_grpc

pytestmark = pytest.mark.process

CONFIG = """
max_waiters_per_key = 4
[limits]
arxiv = "1 per 3s"
wikipedia = "200/s burst 20"
fast = "1000/s burst 100"
llm-tokens = { rate = 90000, period = "1m", burst = 9000, unit = "tokens" }
"""

StartSidecar = Callable[..., Any]


def details(err: grpc.aio.AioRpcError) -> list[object]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    out: list[object] = []
    for any_ in status.details:
        for kind in (error_details_pb2.BadRequest, error_details_pb2.RetryInfo, error_details_pb2.ErrorInfo):
            msg = kind()
            if any_.Unpack(msg):
                out.append(msg)
    return out


async def test_contract_errors_health_reflection(sidecars: StartSidecar) -> None:
    sidecar = sidecars(CONFIG)
    async with grpc.aio.insecure_channel(sidecar.target) as channel:
        stub = pb_grpc.RateLimiterServiceStub(channel)
        limits = await stub.ListLimits(pb.ListLimitsRequest())
        assert [lim.key for lim in limits.limits] == ["arxiv", "wikipedia", "fast", "llm-tokens"]
        assert limits.limits[0].period.seconds == 3 and limits.limits[3].unit == "tokens"

        first = await stub.Acquire(pb.AcquireRequest(key="arxiv"))
        assert first.outcome == pb.ACQUIRE_OUTCOME_GRANTED and first.mode == pb.BUDGET_MODE_SHARED
        refused = await stub.Acquire(pb.AcquireRequest(key="arxiv", max_wait={"nanos": 100_000_000}))
        assert refused.outcome == pb.ACQUIRE_OUTCOME_REFUSED
        # "1 per 3s" is a window: the next grant comes 3 s plus the margin (100 ms) later.
        assert 2.5 < refused.retry_after.seconds + refused.retry_after.nanos / 1e9 <= 3.101
        # A caller's RPC deadline caps its max_wait: answered in time, never DEADLINE_EXCEEDED.
        capped = await stub.Acquire(pb.AcquireRequest(key="arxiv", max_wait={"seconds": 60}), timeout=1.0)
        assert capped.outcome == pb.ACQUIRE_OUTCOME_REFUSED

        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.Acquire(pb.AcquireRequest(key="wikipedia", cost=21))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        (violations,) = details(bad.value)
        assert isinstance(violations, error_details_pb2.BadRequest)
        assert violations.field_violations[0].field == "cost"
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.Acquire(pb.AcquireRequest(key="wikipedia", max_wait={"seconds": -1}))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.DescribeLimit(pb.DescribeLimitRequest(key="nope"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND

        # A full line: RESOURCE_EXHAUSTED with RetryInfo.
        queued = [
            asyncio.ensure_future(stub.Acquire(pb.AcquireRequest(key="arxiv", max_wait={"seconds": 60})))
            for _ in range(5)
        ]
        done, _ = await asyncio.wait(queued, timeout=10, return_when=asyncio.FIRST_EXCEPTION)
        (full,) = [t for t in done if t.exception() is not None]
        err = full.exception()
        assert isinstance(err, grpc.aio.AioRpcError) and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        (retry,) = details(err)
        assert isinstance(retry, error_details_pb2.RetryInfo) and retry.retry_delay.seconds > 0
        for task in queued:
            task.cancel()

        report = await stub.ReportThrottled(
            pb.ReportThrottledRequest(key="wikipedia", retry_after={"seconds": 2})
        )
        assert report.paused_for.seconds == 2
        described = await stub.DescribeLimit(pb.DescribeLimitRequest(key="wikipedia"))
        assert described.available == 0 and described.paused_for.seconds >= 1
        assert described.limit.burst == 20

        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "stepstream.v1.RateLimiterService", envoy.SERVICE_NAME):
            answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING

        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for answer in reflect.ServerReflectionInfo(iter([request])):
            names = {s.name for s in answer.list_services_response.service}
        assert {"stepstream.v1.RateLimiterService", envoy.SERVICE_NAME, "grpc.health.v1.Health"} <= names


async def test_envoy_should_rate_limit(sidecars: StartSidecar) -> None:
    sidecar = sidecars(CONFIG)
    async with grpc.aio.insecure_channel(sidecar.target) as channel:
        call = channel.unary_unary(
            f"/{envoy.SERVICE_NAME}/ShouldRateLimit",
            request_serializer=envoy.RateLimitRequest.SerializeToString,
            response_deserializer=envoy.RateLimitResponse.FromString,
        )

        def request(value: str, hits: int = 0) -> object:
            entries = [{"key": "generic_key", "value": value}]
            return envoy.RateLimitRequest(domain="edge", descriptors=[{"entries": entries}], hits_addend=hits)

        ok = await call(request("arxiv"))
        assert ok.overall_code == envoy.CODE_OK
        assert ok.statuses[0].current_limit.requests_per_unit == 20 and ok.statuses[0].current_limit.unit == 2
        over = await call(request("arxiv"))
        assert over.overall_code == envoy.CODE_OVER_LIMIT
        assert over.statuses[0].duration_until_reset.seconds >= 2
        assert (await call(request("not-limited"))).overall_code == envoy.CODE_OK
        assert (await call(request("wikipedia", hits=20))).overall_code == envoy.CODE_OK
        assert (await call(request("wikipedia", hits=20))).overall_code == envoy.CODE_OVER_LIMIT


@pytest.mark.parametrize("transport", ["stream", "unary"])
async def test_remote_limiter_acquire_priority_and_leases(sidecars: StartSidecar, transport: str) -> None:
    sidecar = sidecars(CONFIG)
    limiter = RemoteLimiter(sidecar.target, leases={"fast": 50}, transport=transport)  # type: ignore[arg-type]
    try:
        with pytest.raises(LimiterRequestError) as unknown:
            await limiter.acquire("nope")
        assert unknown.value.code == "NOT_FOUND"
        with pytest.raises(LimiterRequestError) as too_big:
            await limiter.acquire("wikipedia", cost=21)
        assert too_big.value.code == "INVALID_ARGUMENT" and "burst" in too_big.value.message
        # Many callers at once share the stream (or make their own calls) and all get through.
        grants = await asyncio.gather(*(limiter.acquire("llm-tokens", timeout=5) for _ in range(200)))
        assert len(grants) == 200
        async with limiter.acquire("wikipedia", priority=Priority.INTERACTIVE) as grant:
            assert grant.mode == Mode.SHARED
        with pytest.raises(RateLimitRefused):
            for _ in range(3):
                await limiter.acquire("arxiv", timeout=0.1)
        # 300 tokens through 6 lease RPCs instead of 300 acquires.
        for _ in range(300):
            await limiter.acquire("fast")
        async with grpc.aio.insecure_channel(sidecar.target) as channel:
            stub = pb_grpc.RateLimiterServiceStub(channel)
            described = await stub.DescribeLimit(pb.DescribeLimitRequest(key="fast"))
            assert described.available < 100
        await limiter.reconcile("llm-tokens", 5000, 100)
        assert await limiter.report_throttled("arxiv", 1.5) == 1.5
    finally:
        await limiter.close()


async def test_unreachable_sidecar_fails_closed_or_to_a_local_budget(
    sidecars: StartSidecar, free_port_factory: Callable[[], int]
) -> None:
    dead = f"127.0.0.1:{free_port_factory()}"
    closed = RemoteLimiter(dead, on_unavailable="closed")
    with pytest.raises(LimiterUnavailable):
        await closed.acquire("arxiv", timeout=1)
    await closed.close()

    fallback = RemoteLimiter(
        dead, on_unavailable="local", expected_replicas=2, fallback_limits={"w": "20/s burst 4"}
    )
    # Half the rate (10/s), starting empty once slots the sidecar may have reserved
    # (its 250 ms horizon) have passed: a grant with a wait, never a burst.
    asked_at = time.time()
    first = await fallback.decide("w", 1, 2.0, Priority.NORMAL)
    second = await fallback.decide("w", 1, 2.0, Priority.NORMAL)
    assert first.granted and second.granted and {first.mode, second.mode} == {Mode.LOCAL}
    assert first.granted_at - asked_at >= 0.25 and second.granted_at - first.granted_at == pytest.approx(
        0.1, abs=0.002
    )
    with pytest.raises(RateLimitRefused):
        await fallback.acquire("w", timeout=0)
    await fallback.close()

    # Up, then down, then back: the client follows by itself.
    port = free_port_factory()
    sidecar = sidecars(CONFIG, port=port)
    limiter = RemoteLimiter(sidecar.target, on_unavailable="local", expected_replicas=4, retry_s=0.2)
    try:
        assert (await limiter.acquire("wikipedia")).mode == Mode.SHARED
        sidecar.stop()
        assert (await limiter.acquire("wikipedia", timeout=1)).mode == Mode.LOCAL
        sidecars(CONFIG, name="again.toml", port=port)
        modes = [(await limiter.acquire("wikipedia", timeout=5)).mode for _ in range(100)]
        assert modes[-1] == Mode.SHARED
    finally:
        await limiter.close()
