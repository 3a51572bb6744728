"""Three replicas on one PostgreSQL database (`LocalCluster`, as `stepstream up` starts them):
streams that cross replicas, cancels and resumes from any replica, takeover after SIGKILL and
hand-over on SIGTERM, and the per-session policy held by the database."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator

import grpc
import pytest

from stepstream.server.cluster import LocalCluster
from stepstream.v1 import common_pb2, runs_pb2
from tests.pgserver import create_database
from tests.rpc import Api, kinds, resume
from tests.support import GRAPHS_CONFIG, ROOT

pytestmark = pytest.mark.process


@pytest.fixture
def cluster(postgres_url: str) -> Iterator[LocalCluster]:
    with LocalCluster(
        create_database(postgres_url), GRAPHS_CONFIG, 3, serve_args=["--grace", "5"], cwd=ROOT
    ) as c:
        yield c


@pytest.fixture
def apis(cluster: LocalCluster) -> Iterator[list[Api]]:
    clients = [Api(address) for address in cluster.addresses]
    yield clients
    for client in clients:
        client.close()


def _events_until(api: Api, run_id: str, kind: str, count: int, after_seq: int = 0) -> list[object]:
    events: list[object] = []
    for reply in api.runs.JoinRun(runs_pb2.JoinRunRequest(run_id=run_id, after_seq=after_seq)):
        events += reply.events
        if kinds(events).count(kind) >= count:  # type: ignore[arg-type]
            return events
    raise AssertionError(f"run ended before {count} {kind} events")


def _replicas(events: list[object]) -> list[str]:
    return [e.run_started.replica for e in events if e.WhichOneof("kind") == "run_started"]  # type: ignore[attr-defined]


def test_a_run_on_b_streams_live_to_a_and_resumes_on_c_without_gap(apis: list[Api]) -> None:
    a, b, c = apis
    run = b.start("slow", {"steps": 6, "delay": 0.15})
    first = _events_until(a, run.run_id, "superstep_finished", 2)
    rest = c.join(run.run_id, after_seq=first[-1].seq)  # type: ignore[attr-defined]
    events = first + rest
    assert [e.seq for e in events] == list(range(1, len(events) + 1))  # type: ignore[attr-defined]
    assert kinds(events)[-1] == "run_finished"
    assert len(set(_replicas(events))) == 1 and _replicas(events) != [""]
    assert json.loads(c.wait(run.run_id).values_json)["done"] == [0, 1, 2, 3, 4, 5]


def test_cancel_from_another_replica_and_resume_on_a_third(apis: list[Api]) -> None:
    a, b, c = apis
    run = a.start("slow", {"steps": 50, "delay": 0.1})
    _events_until(b, run.run_id, "superstep_finished", 1)
    cancelled = b.runs.CancelRun(runs_pb2.CancelRunRequest(run_id=run.run_id)).run
    assert cancelled.status == runs_pb2.RUN_STATUS_CANCELLED
    assert kinds(c.join(run.run_id))[-1] == "run_cancelled"

    asked = a.stream("ask", {"question": "which topic?"})
    session_id = asked[0].run_queued.session_id
    assert "interrupt_raised" in kinds(asked)
    answered = c.stream(session_id=session_id, command=resume("graphs"))
    assert kinds(answered)[-1] == "run_finished"
    assert "graphs" in json.dumps(b.values(session_id))


def test_the_session_policy_holds_across_replicas(apis: list[Api]) -> None:
    a, b, c = apis
    first = a.start("slow", {"steps": 4, "delay": 0.15})
    with pytest.raises(grpc.RpcError) as refused:
        b.start(session_id=first.session_id, inp={"steps": 1}, busy_policy=common_pb2.BUSY_POLICY_REJECT)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    second = c.start(
        session_id=first.session_id, inp={"steps": 5}, busy_policy=common_pb2.BUSY_POLICY_ENQUEUE
    )
    assert second.status == runs_pb2.RUN_STATUS_QUEUED
    done_first, done_second = a.wait(first.run_id), b.wait(second.run_id)
    assert done_first.status == done_second.status == runs_pb2.RUN_STATUS_SUCCEEDED
    assert done_first.ended_at.ToDatetime() <= done_second.started_at.ToDatetime()


def test_sigkill_a_replica_and_another_continues_its_run(cluster: LocalCluster, apis: list[Api]) -> None:
    a, b, _ = apis
    run = b.start("slow", {"steps": 8, "delay": 0.2})
    before = _events_until(a, run.run_id, "superstep_finished", 2)
    cluster.kill(1)
    rest = a.join(run.run_id, after_seq=before[-1].seq)  # type: ignore[attr-defined]
    done = a.wait(run.run_id)
    assert done.status == runs_pb2.RUN_STATUS_SUCCEEDED and done.attempt == 2
    # Each tick appends its index once: no finished superstep ran twice.
    assert json.loads(done.values_json)["done"] == list(range(8))
    events = before + rest
    assert [e.seq for e in events] == list(range(1, len(events) + 1))  # type: ignore[attr-defined]
    replicas = _replicas(events)
    assert len(replicas) == 2 and replicas[0] == "replica-2" and replicas[1] != "replica-2"


def test_sigterm_hands_runs_to_another_replica_at_once(cluster: LocalCluster, apis: list[Api]) -> None:
    a, b, _ = apis
    run = b.start("slow", {"steps": 6, "delay": 0.3})
    before = _events_until(a, run.run_id, "superstep_finished", 1)
    b.close()
    cluster.replicas[1].server.stop()  # SIGTERM: drain to a superstep boundary, hand back
    done = a.wait(run.run_id)
    assert done.status == runs_pb2.RUN_STATUS_SUCCEEDED and done.attempt == 2
    assert json.loads(done.values_json)["done"] == list(range(6))
    events = before + a.join(run.run_id, after_seq=before[-1].seq)  # type: ignore[attr-defined]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))  # type: ignore[attr-defined]
    assert len(set(_replicas(events))) == 2


def test_stepstream_up_starts_replicas_with_sidecars_and_stops_them(postgres_url: str) -> None:
    limits = ROOT / "tests" / "graphs" / "limits.toml"
    command = [sys.executable, "-m", "stepstream.cli.main", "up", "--replicas", "2"]
    command += [
        "--db",
        create_database(postgres_url),
        "--config",
        str(GRAPHS_CONFIG),
        "--limits",
        str(limits),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    assert proc.stdout is not None
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("cluster ready: "):
                break
        addresses = lines[-1].removeprefix("cluster ready: ").strip().split(",")
        assert len(addresses) == 2 and sum("(limiter 127.0.0.1:" in line for line in lines) == 2, lines
        # The SDK balances over every address; runs on either replica see the other's sessions.
        api_a, api_b = Api(addresses[0]), Api(addresses[1])
        try:
            run = api_a.start("linear", {"x": 1})
            assert api_b.wait(run.run_id).status == runs_pb2.RUN_STATUS_SUCCEEDED
        finally:
            api_a.close()
            api_b.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
