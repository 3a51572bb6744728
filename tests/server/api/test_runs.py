"""Runs through a real `stepstream serve` process: events, join, interrupts, concurrency."""

from __future__ import annotations

import json
import uuid

import pytest

from stepstream.v1 import events_pb2, runs_pb2, sessions_pb2
from tests.rpc import Api, kinds, resume

pytestmark = pytest.mark.process


def test_linear_run_streams_supersteps_and_tasks_in_order(api: Api) -> None:
    events = api.stream("linear", {"x": 1})
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len({e.run_id for e in events}) == 1
    names = kinds(events)
    assert names[:2] == ["run_queued", "run_started"]
    assert names[-1] == "run_finished"
    started = [e.superstep_started for e in events if e.WhichOneof("kind") == "superstep_started"]
    finished = [e.superstep_finished for e in events if e.WhichOneof("kind") == "superstep_finished"]
    assert [s.step for s in started] == [1, 2, 3] == [f.step for f in finished]
    assert [[t.node for t in s.tasks] for s in started] == [["a"], ["b"], ["c"]]
    assert all(f.checkpoint_id for f in finished)
    updates = [
        json.loads(e.task_finished.update_json) for e in events if e.WhichOneof("kind") == "task_finished"
    ]
    assert updates == [{"x": 2, "log": ["a"]}, {"x": 3, "log": ["b"]}, {"x": 4, "log": ["c"]}]
    assert json.loads(events[-1].run_finished.values_json) == {"x": 4, "log": ["a", "b", "c"]}
    run = api.get_run(events[0].run_id)
    assert run.status == runs_pb2.RUN_STATUS_SUCCEEDED
    assert run.last_seq == events[-1].seq


def test_join_after_seq_replays_the_rest_exactly_once(api: Api) -> None:
    events = api.stream("fanout", {"n": 5})
    run_id = events[0].run_id
    for cut in (0, 3, len(events) - 1):
        rest = api.join(run_id, after_seq=cut)
        assert [e.seq for e in rest] == [e.seq for e in events if e.seq > cut]
        assert [e.SerializeToString() for e in rest] == [e.SerializeToString() for e in events if e.seq > cut]
    assert api.join(run_id, after_seq=events[-1].seq) == []


def test_event_kind_selection_is_kept_on_rejoin(api: Api) -> None:
    only = [events_pb2.EVENT_KIND_SUPERSTEPS]
    events = api.stream("linear", {"x": 0}, kinds=only)
    assert set(kinds(events)) == {
        "run_queued",
        "run_started",
        "superstep_started",
        "superstep_finished",
        "run_finished",
    }
    rejoined = api.join(events[0].run_id, after_seq=events[2].seq, kinds=only)
    assert [e.seq for e in rejoined] == [e.seq for e in events if e.seq > events[2].seq]


def test_subgraph_events_carry_their_namespace_and_are_opt_in(api: Api) -> None:
    plain = api.stream("nested", {"x": 0})
    assert all(not e.namespace for e in plain)
    deep = api.stream("nested", {"x": 0}, subgraphs=True)
    inner = [e for e in deep if e.namespace]
    assert inner and all(e.namespace[0].startswith("sub:") for e in inner)
    assert "inner" in [e.task_started.task.node for e in inner if e.WhichOneof("kind") == "task_started"]
    rejoined = api.join(deep[0].run_id, after_seq=0, subgraphs=True)
    assert [e.seq for e in rejoined] == [e.seq for e in deep]


def test_chat_model_tokens_stream_as_message_chunks(api: Api) -> None:
    events = api.stream("chat", {"messages": [{"role": "user", "content": "hi"}]})
    chunks = [e.message_chunk for e in events if e.WhichOneof("kind") == "message_chunk"]
    assert len(chunks) > 1
    assert len({c.message_id for c in chunks}) == 1
    text = "".join(json.loads(c.chunk_json)["content"] for c in chunks)
    assert text == "hello from the fake model"
    assert all(c.node == "reply" for c in chunks)


def test_custom_events_and_max_concurrency(api: Api) -> None:
    bounded = api.stream("fanout", {"n": 6, "delay": 0.05}, max_concurrency=2)
    custom = [json.loads(e.custom.value_json) for e in bounded if e.WhichOneof("kind") == "custom"]
    assert sorted(c["working_on"] for c in custom) == list(range(6))
    values = json.loads(bounded[-1].run_finished.values_json)
    assert values["total"] == 15
    assert values["peak"] <= 2
    unbounded = api.stream("fanout", {"n": 6, "delay": 0.05}, max_concurrency=100)
    assert json.loads(unbounded[-1].run_finished.values_json)["peak"] > 2


def test_failed_task_fails_the_run_with_its_error(api: Api) -> None:
    events = api.stream("boom", {"x": 1})
    failed = [e.task_failed for e in events if e.WhichOneof("kind") == "task_failed"]
    assert failed and failed[0].error_type == "ValueError" and failed[0].error_message == "boom"
    assert events[-1].run_failed.error_type == "ValueError"
    assert api.get_run(events[0].run_id).status == runs_pb2.RUN_STATUS_FAILED


def test_interrupt_then_resume_on_the_same_session(api: Api) -> None:
    first = api.stream("ask", {"question": "name?"})
    raised = [e.interrupt_raised for e in first if e.WhichOneof("kind") == "interrupt_raised"]
    assert raised and json.loads(raised[0].interrupts[0].value_json) == "name?"
    assert first[-1].run_finished.interrupts[0].interrupt_id == raised[0].interrupts[0].interrupt_id
    run = api.get_run(first[0].run_id)
    assert run.status == runs_pb2.RUN_STATUS_INTERRUPTED
    second = api.stream(session_id=run.session_id, command=resume("ada"))
    assert json.loads(second[-1].run_finished.values_json) == {"question": "name?", "answer": "ada"}
    assert api.values(run.session_id)["answer"] == "ada"


def test_the_server_makes_time_ordered_ids_and_keeps_a_clients(api: Api) -> None:
    made = api.runs.StartRun(runs_pb2.StartRunRequest(graph_id="linear", input_json='{"x": 1}')).run
    later = api.runs.StartRun(runs_pb2.StartRunRequest(graph_id="linear", input_json='{"x": 1}')).run
    for made_id in (made.run_id, made.session_id, later.run_id, later.session_id):
        assert uuid.UUID(made_id).version == 7
    assert made.run_id < later.run_id and made.session_id < later.session_id
    chosen = api.runs.StartRun(
        runs_pb2.StartRunRequest(graph_id="linear", input_json='{"x": 1}', run_id="client-chosen-ids")
    ).run
    assert chosen.run_id == "client-chosen-ids"


def test_a_retried_start_with_the_same_run_id_returns_the_same_run(api: Api) -> None:
    run_id = "client-chosen-0001"
    first = api.runs.StartRun(
        runs_pb2.StartRunRequest(graph_id="linear", input_json='{"x": 1}', run_id=run_id)
    ).run
    again = api.runs.StartRun(
        runs_pb2.StartRunRequest(graph_id="linear", input_json='{"x": 1}', run_id=run_id)
    ).run
    assert first.run_id == again.run_id == run_id and first.session_id == again.session_id
    streamed = [
        e
        for reply in api.runs.StreamRun(
            runs_pb2.StreamRunRequest(
                run=runs_pb2.StartRunRequest(graph_id="linear", input_json='{"x": 1}', run_id=run_id)
            )
        )
        for e in reply.events
    ]
    assert streamed[0].seq == 1 and streamed[-1].WhichOneof("kind") == "run_finished"
    listed = api.runs.ListRuns(runs_pb2.ListRunsRequest(session_id=first.session_id)).runs
    assert [r.run_id for r in listed] == [run_id]


def test_a_finished_superstep_is_already_durable_when_announced(api: Api) -> None:
    # max_concurrency 1 makes checkpoint writes queue behind the next superstep's tasks.
    run = api.start("fanout", {"n": 6, "delay": 0.01}, max_concurrency=1)
    checked = 0
    for reply in api.runs.JoinRun(runs_pb2.JoinRunRequest(run_id=run.run_id)):
        for event in reply.events:
            if event.WhichOneof("kind") == "superstep_finished":
                request = sessions_pb2.GetSessionStateRequest(
                    session_id=run.session_id, checkpoint_id=event.superstep_finished.checkpoint_id
                )
                state = api.sessions.GetSessionState(request).state
                assert state.checkpoint_id == event.superstep_finished.checkpoint_id
                checked += 1
    assert checked == 2
