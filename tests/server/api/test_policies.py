"""One active run per session: the four busy policies, cancel, and continuing after a cancel."""

from __future__ import annotations

import json

import grpc
import pytest

from stepstream.v1 import common_pb2, runs_pb2, sessions_pb2
from tests.rpc import Api, kinds

pytestmark = pytest.mark.process

SLOW = {"steps": 3, "delay": 0.3}


def test_reject_refuses_a_second_run_and_keeps_the_first(api: Api) -> None:
    first = api.start("slow", SLOW)
    with pytest.raises(grpc.RpcError) as err:
        api.start(session_id=first.session_id, inp=SLOW, busy_policy=common_pb2.BUSY_POLICY_REJECT)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "active run" in (err.value.details() or "")
    assert api.wait(first.run_id).status == runs_pb2.RUN_STATUS_SUCCEEDED
    assert api.values(first.session_id)["done"] == [0, 1, 2]


def test_enqueue_runs_one_after_the_other(api: Api) -> None:
    first = api.start("slow", {"steps": 2, "delay": 0.2})
    second = api.start(
        session_id=first.session_id, inp={"steps": 3}, busy_policy=common_pb2.BUSY_POLICY_ENQUEUE
    )
    assert second.status == runs_pb2.RUN_STATUS_QUEUED
    done_second = api.wait(second.run_id)
    done_first = api.get_run(first.run_id)
    assert done_first.status == done_second.status == runs_pb2.RUN_STATUS_SUCCEEDED
    assert done_first.ended_at.ToNanoseconds() <= done_second.started_at.ToNanoseconds()
    # The second run continued the session's state: three ticks in all, counted across both.
    assert api.values(first.session_id)["done"] == [0, 1, 2]


def test_interrupt_stops_the_active_run_and_keeps_its_checkpoints(api: Api) -> None:
    first = api.start("slow", {"steps": 50, "delay": 0.1})
    # Interrupted once it has work to keep: a superstep checkpointed.
    for reply in api.runs.JoinRun(runs_pb2.JoinRunRequest(run_id=first.run_id)):
        if "superstep_finished" in kinds(reply.events):
            break
    second = api.start(
        session_id=first.session_id,
        inp={"steps": 1, "delay": 0},
        busy_policy=common_pb2.BUSY_POLICY_INTERRUPT,
    )
    cancelled = api.get_run(first.run_id)
    assert cancelled.status == runs_pb2.RUN_STATUS_CANCELLED
    assert api.wait(second.run_id).status == runs_pb2.RUN_STATUS_SUCCEEDED
    history = api.sessions.GetSessionHistory(
        sessions_pb2.GetSessionHistoryRequest(session_id=first.session_id, page_size=1000)
    ).states
    assert {s.run_id for s in history} >= {first.run_id, second.run_id}


def test_rollback_drops_the_active_runs_work(api: Api) -> None:
    first = api.start("slow", {"steps": 50, "delay": 0.05})
    events = []
    for reply in api.runs.JoinRun(runs_pb2.JoinRunRequest(run_id=first.run_id)):
        events += reply.events
        if "superstep_finished" in kinds(events):
            break
    second = api.start(
        session_id=first.session_id, inp={"steps": 1, "delay": 0}, busy_policy=common_pb2.BUSY_POLICY_ROLLBACK
    )
    tail = api.join(first.run_id)
    assert tail[-1].run_cancelled.rolled_back
    assert api.wait(second.run_id).status == runs_pb2.RUN_STATUS_SUCCEEDED
    history = api.sessions.GetSessionHistory(
        sessions_pb2.GetSessionHistoryRequest(session_id=first.session_id, page_size=1000)
    ).states
    assert first.run_id not in {s.run_id for s in history}
    assert api.values(first.session_id)["done"] == [0]


def test_cancel_leaves_a_checkpoint_the_session_continues_from(api: Api) -> None:
    run = api.start("slow", {"steps": 4, "delay": 0.2})
    events = []
    for reply in api.runs.JoinRun(runs_pb2.JoinRunRequest(run_id=run.run_id)):
        events += reply.events
        if kinds(events).count("superstep_finished") >= 1:
            break
    cancelled = api.runs.CancelRun(runs_pb2.CancelRunRequest(run_id=run.run_id)).run
    assert cancelled.status == runs_pb2.RUN_STATUS_CANCELLED
    assert api.join(run.run_id)[-1].WhichOneof("kind") == "run_cancelled"
    kept = api.values(run.session_id)["done"]
    assert 1 <= len(kept) < 4
    with pytest.raises(grpc.RpcError) as err:
        api.runs.CancelRun(runs_pb2.CancelRunRequest(run_id=run.run_id))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # Continue with no input: the run picks up after the last finished superstep.
    cont = api.stream(session_id=run.session_id)
    assert json.loads(cont[-1].run_finished.values_json)["done"] == [0, 1, 2, 3]
