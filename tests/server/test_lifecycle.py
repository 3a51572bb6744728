"""Server processes that die, drain and fill up: nothing is lost, and clients are told why."""

from __future__ import annotations

import json
import pathlib
import signal

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from stepstream.v1 import runs_pb2
from tests.rpc import Api, kinds
from tests.support import ServerProcess

pytestmark = pytest.mark.process


def _db(tmp_path: pathlib.Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'stepstream.db'}"


def _wait_for_supersteps(api: Api, run_id: str, count: int) -> list[object]:
    events: list[object] = []
    for reply in api.runs.JoinRun(runs_pb2.JoinRunRequest(run_id=run_id)):
        events += reply.events
        if kinds(events).count("superstep_finished") >= count:  # type: ignore[arg-type]
            return events
    raise AssertionError("run ended early")


def test_sigkill_mid_run_then_restart_finishes_without_redoing_supersteps(tmp_path: pathlib.Path) -> None:
    check_sigkill_recovery(_db(tmp_path), _db(tmp_path))


def check_sigkill_recovery(db_url: str, restart_db_url: str) -> None:
    """Kill a server mid-run; a new one on the same database finishes the run, redoing no superstep."""
    server = ServerProcess(db_url)
    api = Api(server.start())
    run = api.start("slow", {"steps": 6, "delay": 0.15})
    before = _wait_for_supersteps(api, run.run_id, 2)
    api.close()
    server.kill()

    restarted = ServerProcess(restart_db_url)
    api = Api(restarted.start())
    try:
        # Joined from the start while it executes again: stored and live events meet without a gap.
        events = api.join(run.run_id)
        done = api.wait(run.run_id)
        assert done.status == runs_pb2.RUN_STATUS_SUCCEEDED
        assert done.attempt == 2
        # Each tick appends its index once: a re-run superstep would repeat an index.
        assert json.loads(done.values_json)["done"] == [0, 1, 2, 3, 4, 5]
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert [e.SerializeToString() for e in events[: len(before)]] == [
            e.SerializeToString()  # type: ignore[attr-defined]
            for e in before
        ]
        started = [e.run_started.attempt for e in events if e.WhichOneof("kind") == "run_started"]
        assert started == [1, 2]
    finally:
        api.close()
        restarted.stop()


def test_sigterm_drains_at_a_superstep_boundary_and_hands_the_run_back(tmp_path: pathlib.Path) -> None:
    server = ServerProcess(_db(tmp_path), "--grace", "10")
    api = Api(server.start())
    run = api.start("slow", {"steps": 8, "delay": 0.3})
    _wait_for_supersteps(api, run.run_id, 1)
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0
    api.close()

    restarted = ServerProcess(_db(tmp_path))
    api = Api(restarted.start())
    try:
        done = api.wait(run.run_id)
        assert done.status == runs_pb2.RUN_STATUS_SUCCEEDED
        assert json.loads(done.values_json)["done"] == list(range(8))
    finally:
        api.close()
        restarted.stop()


def test_full_queue_answers_resource_exhausted_with_retry_info(tmp_path: pathlib.Path) -> None:
    server = ServerProcess(_db(tmp_path), "--max-active-runs", "1", "--max-queued-runs", "1")
    api = Api(server.start())
    try:
        running = api.start("slow", {"steps": 3, "delay": 0.2})
        queued = api.start("slow", {"steps": 1, "delay": 0})
        assert queued.status == runs_pb2.RUN_STATUS_QUEUED
        with pytest.raises(grpc.RpcError) as err:
            api.start("slow", {"steps": 1, "delay": 0})
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        status = rpc_status.from_call(err.value)  # type: ignore[arg-type]
        assert status is not None
        retry = error_details_pb2.RetryInfo()
        assert status.details[0].Unpack(retry) and retry.retry_delay.ToNanoseconds() > 0
        assert api.wait(running.run_id).status == runs_pb2.RUN_STATUS_SUCCEEDED
        assert api.wait(queued.run_id).status == runs_pb2.RUN_STATUS_SUCCEEDED
        # Room again once the queue drained.
        assert api.wait(api.start("linear", {"x": 0}).run_id).status == runs_pb2.RUN_STATUS_SUCCEEDED
    finally:
        api.close()
        server.stop()


def test_health_and_reflection_answer(server_address: str) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(server_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "stepstream.v1.RunService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        names = {
            s.name
            for r in stub.ServerReflectionInfo(iter([request]))
            for s in r.list_services_response.service
        }
        assert {
            "stepstream.v1.RunService",
            "stepstream.v1.SessionService",
            "stepstream.v1.GraphService",
        } <= names
        assert "grpc.health.v1.Health" in names


def test_sigterm_with_no_runs_exits_promptly(tmp_path: pathlib.Path) -> None:
    server = ServerProcess(_db(tmp_path))
    server.start()
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0
