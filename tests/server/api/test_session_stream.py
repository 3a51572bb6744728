"""The bidirectional session stream: start, interrupt, resume, cancel, update and errors on one stream."""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from typing import Any

import pytest

from stepstream.v1 import common_pb2, runs_pb2, sessions_pb2
from tests.rpc import Api

pytestmark = pytest.mark.process

Request = sessions_pb2.SessionStreamRequest


class Stream:
    """Drive one SessionStream call: send requests, read responses in order."""

    def __init__(self, api: Api) -> None:
        self._requests: queue.Queue[Request | None] = queue.Queue()
        self._responses = api.sessions.SessionStream(self._iterate(), timeout=60)

    def _iterate(self) -> Iterator[Request]:
        while (item := self._requests.get()) is not None:
            yield item

    def send(self, **kw: Any) -> None:
        self._requests.put(Request(**kw))

    def next(self) -> sessions_pb2.SessionStreamResponse:
        return next(self._responses)

    def until_run_ends(self) -> list[sessions_pb2.SessionStreamResponse]:
        seen = []
        while True:
            reply = self.next()
            seen.append(reply)
            if reply.WhichOneof("kind") == "event" and reply.event.WhichOneof("kind") in (
                "run_finished",
                "run_failed",
                "run_cancelled",
            ):
                return seen

    def close(self) -> None:
        self._requests.put(None)


def test_interrupt_answered_on_the_same_stream(api: Api) -> None:
    stream = Stream(api)
    stream.send(request_id="o", open=sessions_pb2.OpenSession(graph_id="ask"))
    opened = stream.next()
    assert opened.request_id == "o" and opened.session.graph_id == "ask"
    stream.send(request_id="s", start_run=sessions_pb2.StartRun(input_json='{"question": "color?"}'))
    first = stream.until_run_ends()
    assert first[0].WhichOneof("kind") == "run" and first[0].run.session_id == opened.session.session_id
    interrupts = [r.event.interrupt_raised for r in first if r.event.WhichOneof("kind") == "interrupt_raised"]
    assert json.loads(interrupts[0].interrupts[0].value_json) == "color?"
    stream.send(request_id="r", resume=common_pb2.Command(resume_json='"teal"'))
    second = stream.until_run_ends()
    assert all(r.request_id == "r" for r in second)
    assert json.loads(second[-1].event.run_finished.values_json)["answer"] == "teal"
    stream.close()


def test_bad_actions_are_answered_and_the_stream_stays_open(api: Api) -> None:
    stream = Stream(api)
    stream.send(request_id="early", start_run=sessions_pb2.StartRun(input_json="{}"))
    assert stream.next().error.code == 9  # FAILED_PRECONDITION: open first
    stream.send(request_id="o", open=sessions_pb2.OpenSession(graph_id="linear"))
    session_id = stream.next().session.session_id
    stream.send(request_id="bad", start_run=sessions_pb2.StartRun(input_json="{oops"))
    error = stream.next().error
    assert error.code == 3 and error.field == "input_json"
    stream.send(request_id="resume", resume=common_pb2.Command(resume_json='"x"'))
    assert stream.next().error.code == 9  # nothing to resume
    stream.send(request_id="cancel", cancel=sessions_pb2.CancelActiveRun())
    assert stream.next().error.code == 9  # nothing to cancel
    stream.send(request_id="ok", start_run=sessions_pb2.StartRun(input_json='{"x": 5}'))
    done = stream.until_run_ends()
    assert json.loads(done[-1].event.run_finished.values_json)["x"] == 8
    stream.send(
        request_id="u",
        update_state=sessions_pb2.UpdateSessionStateRequest(values_json='{"x": 100}', as_node="c"),
    )
    assert stream.next().state_updated.checkpoint_id
    assert api.values(session_id)["x"] == 100
    stream.close()


def test_cancel_on_the_stream_and_session_status(api: Api) -> None:
    stream = Stream(api)
    stream.send(request_id="o", open=sessions_pb2.OpenSession(graph_id="slow"))
    session_id = stream.next().session.session_id
    stream.send(request_id="s", start_run=sessions_pb2.StartRun(input_json='{"steps": 100, "delay": 0.05}'))
    assert stream.next().WhichOneof("kind") == "run"
    session = api.sessions.GetSession(sessions_pb2.GetSessionRequest(session_id=session_id)).session
    assert session.status == sessions_pb2.SESSION_STATUS_BUSY
    stream.send(request_id="c", cancel=sessions_pb2.CancelActiveRun())
    seen = []
    while True:
        reply = stream.next()
        seen.append(reply.WhichOneof("kind"))
        if reply.WhichOneof("kind") == "cancelled":
            assert reply.cancelled.status == runs_pb2.RUN_STATUS_CANCELLED
            break
    stream.close()
    session = api.sessions.GetSession(sessions_pb2.GetSessionRequest(session_id=session_id)).session
    assert session.status == sessions_pb2.SESSION_STATUS_IDLE


def test_a_broken_stream_continues_from_its_cursor(api: Api) -> None:
    stream = Stream(api)
    stream.send(request_id="o", open=sessions_pb2.OpenSession(graph_id="slow"))
    session_id = stream.next().session.session_id
    stream.send(request_id="s", start_run=sessions_pb2.StartRun(input_json='{"steps": 4, "delay": 0.1}'))
    run_id = stream.next().run.run_id
    seen = [stream.next().event for _ in range(4)]
    stream.close()  # the client goes away mid-run

    again = Stream(api)
    again.send(
        request_id="o2",
        open=sessions_pb2.OpenSession(session_id=session_id, resume_run_id=run_id, after_seq=seen[-1].seq),
    )
    assert again.next().session.session_id == session_id
    rest = [r.event for r in again.until_run_ends()]
    assert [e.seq for e in rest] == list(range(seen[-1].seq + 1, rest[-1].seq + 1))
    assert [e.seq for e in seen] == list(range(1, 5))
    again.close()


def _events_of_one_run(api: Api, batch_events: bool) -> tuple[list[str], list[int]]:
    """The response kinds, and how many events each carried, for one run of the linear graph."""
    stream = Stream(api)
    stream.send(request_id="o", open=sessions_pb2.OpenSession(graph_id="linear", batch_events=batch_events))
    stream.next()
    stream.send(request_id="s", start_run=sessions_pb2.StartRun(input_json='{"x": 1}'))
    assert stream.next().WhichOneof("kind") == "run"
    kinds, sizes, events = [], [], []
    while not events or events[-1].WhichOneof("kind") != "run_finished":
        reply = stream.next()
        kinds.append(reply.WhichOneof("kind"))
        carried = list(reply.events.events) if kinds[-1] == "events" else [reply.event]
        sizes.append(len(carried))
        events += carried
    stream.close()
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    return kinds, sizes


def test_events_come_in_committed_batches_when_the_stream_asks(api: Api) -> None:
    kinds, sizes = _events_of_one_run(api, batch_events=False)
    assert set(kinds) == {"event"}  # what clients that never ask keep getting
    batched_kinds, batched_sizes = _events_of_one_run(api, batch_events=True)
    assert set(batched_kinds) == {"events"}
    # The same events, in fewer responses: the run's first two are stored together.
    assert sum(batched_sizes) == sum(sizes)
    assert len(batched_sizes) < len(sizes) and batched_sizes[0] >= 2
