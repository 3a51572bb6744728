"""InspectorService over gRPC on a live server: the same views as the HTTP door (overview,
its watch stream, a run's timeline and trace, the limits), the run's trace id on Run, and bad
input answered with the right codes."""

from __future__ import annotations

import json
import pathlib
import secrets
from collections.abc import Iterator

import grpc
import httpx
import pytest

from bench.peers.servers import free_port
from stepstream.server.process import ServerProcess
from stepstream.v1 import inspector_pb2, inspector_pb2_grpc, ratelimit_pb2, runs_pb2
from tests.rpc import Api
from tests.server.http.inspector_support import INSPECTOR_JSON
from tests.support import ROOT

pytestmark = [pytest.mark.process, pytest.mark.timeout(300)]

LIMITS = ROOT / "tests" / "graphs" / "limits.toml"
HTTP_PORT = free_port()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = pathlib.Path(tmp_path_factory.mktemp("inspector-grpc")) / "stepstream.db"
    args = ("--limits", str(LIMITS), "--replica", "grpc-replica", "--http-port", str(HTTP_PORT))
    with ServerProcess(f"sqlite+aiosqlite:///{db}", INSPECTOR_JSON, *args) as process:
        yield process


@pytest.fixture
def apis(server: ServerProcess) -> Iterator[tuple[Api, inspector_pb2_grpc.InspectorServiceStub]]:
    api = Api(server.address)
    yield api, inspector_pb2_grpc.InspectorServiceStub(api.channel)
    api.close()


Apis = tuple[Api, inspector_pb2_grpc.InspectorServiceStub]


def test_overview_and_its_watch(apis: Apis) -> None:
    api, inspector = apis
    failed = api.start("boom", {})
    api.wait(failed.run_id)
    overview = inspector.GetOverview(inspector_pb2.GetOverviewRequest()).overview
    assert [(r.name, r.alive) for r in overview.replicas] == [("grpc-replica", True)]
    assert failed.run_id in [e.run_id for e in overview.errors]
    error = next(e for e in overview.errors if e.run_id == failed.run_id)
    assert (error.session_id, error.graph_id) == (failed.session_id, "boom")
    assert error.error == "ValueError: boom" and error.at.seconds > 0
    watch = inspector.WatchOverview(inspector_pb2.WatchOverviewRequest())
    first, second = next(watch).overview, next(watch).overview
    watch.cancel()
    assert second.at.ToNanoseconds() > first.at.ToNanoseconds()
    assert any(g.graph_id == "boom" and g.errors_last_minute >= 1 for g in second.graphs)


def test_timeline_of_a_failed_fan_out(apis: Apis) -> None:
    api, inspector = apis
    run = api.start("fanfail", {"n": 3, "fail": 1, "delay": 0.01})
    api.wait(run.run_id)
    timeline = inspector.GetRunTimeline(inspector_pb2.GetRunTimelineRequest(run_id=run.run_id))
    assert timeline.run.run_id == run.run_id and timeline.run.status == runs_pb2.RUN_STATUS_FAILED
    assert timeline.replica == "grpc-replica" and timeline.run.trace_id == ""
    (work,) = [s for s in timeline.supersteps if any(t.node == "work" for t in s.tasks)]
    assert len(work.tasks) == 3 and not work.checkpoint_id
    errors = [t.error for t in work.tasks if t.status == inspector_pb2.TIMELINE_TASK_STATUS_ERROR]
    assert errors == ["RuntimeError: task 1 failed on purpose"]
    assert all(t.replica == "grpc-replica" and t.started_at.seconds > 0 for t in work.tasks)


def test_interrupts_on_the_timeline(apis: Apis) -> None:
    api, inspector = apis
    run = api.start("ask", {"question": "go?"})
    api.wait(run.run_id)
    timeline = inspector.GetRunTimeline(inspector_pb2.GetRunTimelineRequest(run_id=run.run_id))
    assert [json.loads(i.value_json) for i in timeline.interrupts] == ["go?"]


def test_the_trace_id_travels_and_no_jaeger_is_unavailable(apis: Apis) -> None:
    api, inspector = apis
    # A run started by a caller with a W3C trace context (over HTTP: a server without telemetry
    # set up reads none from gRPC metadata) is part of the caller's trace.
    trace_id = secrets.token_hex(16)
    headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
    body = {"assistant_id": "boom", "input": {}}
    with httpx.Client(base_url=f"http://127.0.0.1:{HTTP_PORT}", timeout=30) as http:
        thread_id = http.post("/threads", json={}).json()["thread_id"]
        created = http.post(f"/threads/{thread_id}/runs", json=body, headers=headers).json()
    run = api.get_run(created["run_id"])
    assert run.trace_id == trace_id
    with pytest.raises(grpc.RpcError) as err:
        inspector.GetRunTrace(inspector_pb2.GetRunTraceRequest(run_id=run.run_id))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "--jaeger-query" in err.value.details()


def test_limits_of_the_in_process_limiter(apis: Apis) -> None:
    _, inspector = apis
    answer = inspector.ListLimitStates(inspector_pb2.ListLimitStatesRequest())
    assert answer.kind == inspector_pb2.LIMITER_KIND_IN_PROCESS and answer.ratelimiter_address == ""
    (limit,) = answer.limits
    assert (limit.key, limit.shape, limit.rate, limit.burst) == (
        "test-api",
        ratelimit_pb2.LIMIT_SHAPE_GCRA,
        20,
        1,
    )
    assert limit.window.ToNanoseconds() == 1_000_000_000 and limit.budget == ratelimit_pb2.BUDGET_MODE_SHARED
    assert not limit.HasField("paused_until")


@pytest.mark.parametrize(
    ("run_id", "code"),
    [
        ("", grpc.StatusCode.INVALID_ARGUMENT),
        ("not an id", grpc.StatusCode.INVALID_ARGUMENT),
        ("x" * 65, grpc.StatusCode.INVALID_ARGUMENT),
        ("no-such-run", grpc.StatusCode.NOT_FOUND),
    ],
)
def test_bad_run_ids(apis: Apis, run_id: str, code: grpc.StatusCode) -> None:
    _, inspector = apis
    for call in (
        lambda: inspector.GetRunTimeline(inspector_pb2.GetRunTimelineRequest(run_id=run_id)),
        lambda: inspector.GetRunTrace(inspector_pb2.GetRunTraceRequest(run_id=run_id)),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == code and err.value.details()
