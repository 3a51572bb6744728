"""Rate-limit acquires traced on both sides of a real sidecar (in this process, on a loopback port)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from stepstream.ratelimiter import server as sidecar
from stepstream.ratelimiter.client import RateLimitRefused, RemoteLimiter
from stepstream.ratelimiter.config import settings_from_mapping
from tests.telemetry.conftest import Recorded


@pytest.fixture
async def sidecar_target(recorded: Recorded) -> AsyncIterator[str]:
    settings = settings_from_mapping({"host": "127.0.0.1", "port": 0, "limits": {"api": "10/s burst 1"}})
    running = await sidecar.start(settings)
    try:
        yield f"127.0.0.1:{running.port}"
    finally:
        await running.stop()


@pytest.mark.parametrize("transport", ["stream", "unary"])
async def test_each_acquire_has_its_server_half_under_the_callers_span(
    recorded: Recorded, sidecar_target: str, transport: str
) -> None:
    limiter = RemoteLimiter(sidecar_target, transport=transport)
    tracer = recorded.telemetry.tracer_provider.get_tracer("test")
    try:
        with tracer.start_as_current_span("node"):
            await limiter.acquire("api", timeout=5)
            await limiter.acquire("api", timeout=5)  # waits ~0.1 s for its slot
            with pytest.raises(RateLimitRefused):
                await limiter.acquire("api", timeout=0)
    finally:
        await limiter.close()
    (node,) = recorded.named("node")
    callers = recorded.children(node, "acquire api")
    assert [c.kind for c in callers] == [SpanKind.INTERNAL] * 3
    assert callers[0].attributes["stepstream.ratelimit.wait_s"] == 0.0
    assert callers[1].attributes["stepstream.ratelimit.wait_s"] > 0.05
    # The wait for the reserved slot is inside the caller's span.
    assert callers[1].end_time - callers[1].start_time >= 0.05e9
    assert callers[2].status.status_code == StatusCode.ERROR
    assert callers[2].attributes["error.type"] == "RateLimitRefused"
    servers = [s for s in recorded.spans() if s.kind == SpanKind.SERVER]
    assert len(servers) == 3
    for caller, granted in zip(callers, (True, True, False), strict=True):
        if transport == "unary":  # the gRPC client span of the call sits between them
            (call,) = recorded.children(caller, "/stepstream.v1.RateLimiterService/Acquire")
            (served,) = recorded.children(call)
        else:  # the first acquire also carries the client's one ListLimits call (the keys' shapes)
            (served,) = [s for s in recorded.children(caller) if s.kind == SpanKind.SERVER]
        assert served.kind == SpanKind.SERVER and served.name == "acquire api"
        assert served.attributes["rpc.method"] == ("Acquire" if transport == "unary" else "AcquireStream")
        assert served.attributes["stepstream.ratelimit.granted"] is granted
    tokens = {
        p.attributes["key"]: p.value for p in recorded.metric_points("stepstream.ratelimit.tokens.granted")
    }
    assert tokens == {"api": 2}
    refused = {
        p.attributes["key"]: p.value for p in recorded.metric_points("stepstream.ratelimit.tokens.refused")
    }
    assert refused == {"api": 1}
    (waits,) = recorded.metric_points("stepstream.ratelimit.wait")
    assert waits.count == 2
