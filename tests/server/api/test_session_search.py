"""Sessions as users search them, over gRPC against a real `stepstream serve` process: metadata
set and patched, lists filtered by containment, status and graph, sorted and paged; copies;
stateless runs; streamed runs whose client goes away.

`server_address` (tests/conftest.py) serves tests/graphs: `linear` (x + 1 three times), `ask`
(interrupt, then {"answer": resume}), `slow` (a tick per `delay` seconds, `steps` times).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from stepstream.v1 import common_pb2, runs_pb2, sessions_pb2
from tests.rpc import Api

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]


@pytest.fixture
def api(server_address: str) -> Iterator[Api]:
    client = Api(server_address)
    yield client
    client.close()


def tag() -> str:
    return uuid.uuid4().hex[:12]


def create(api: Api, graph_id: str, metadata: dict[str, Any]) -> sessions_pb2.Session:
    request = sessions_pb2.CreateSessionRequest(graph_id=graph_id, metadata_json=json.dumps(metadata))
    return api.sessions.CreateSession(request).session


def listed(api: Api, **fields: Any) -> list[str]:
    """Every session id the filters give, following page tokens."""
    ids: list[str] = []
    token = ""
    while True:
        page = api.sessions.ListSessions(sessions_pb2.ListSessionsRequest(page_token=token, **fields))
        ids += [s.session_id for s in page.sessions]
        token = page.next_page_token
        if not token:
            return ids


def wait(api: Api, run_id: str) -> runs_pb2.Run:
    return api.runs.WaitRun(runs_pb2.WaitRunRequest(run_id=run_id, timeout_seconds=60)).run


def resume(api: Api, session_id: str, value: Any) -> runs_pb2.Run:
    request = runs_pb2.StartRunRequest(
        session_id=session_id, command=common_pb2.Command(resume_json=json.dumps(value))
    )
    return wait(api, api.runs.StartRun(request).run.run_id)


def metadata_of(api: Api, session_id: str) -> dict[str, Any]:
    session = api.sessions.GetSession(sessions_pb2.GetSessionRequest(session_id=session_id)).session
    return dict(json.loads(session.metadata_json or "{}"))


def test_metadata_set_patched_and_searched_by_containment_status_and_graph(api: Api) -> None:
    t = tag()
    a = create(api, "linear", {"t": t, "user": {"name": "ann", "team": "x"}, "n": 1})
    b = create(api, "linear", {"t": t, "user": {"name": "bob"}, "n": 2})
    c = create(api, "ask", {"t": t, "user": {"name": "ann"}, "n": 3})
    assert json.loads(a.metadata_json)["user"] == {"name": "ann", "team": "x"}

    # Containment: nested objects by key, every key given.
    assert set(listed(api, metadata_json=json.dumps({"t": t}))) == {a.session_id, b.session_id, c.session_id}
    ann = json.dumps({"t": t, "user": {"name": "ann"}})
    assert set(listed(api, metadata_json=ann)) == {a.session_id, c.session_id}
    assert listed(api, metadata_json=ann, graph_id="ask") == [c.session_id]
    assert listed(api, metadata_json=json.dumps({"t": t, "n": 2})) == [b.session_id]
    assert listed(api, metadata_json=json.dumps({"t": t, "n": "2"})) == []

    # Patch: keys merged, a null removes its key; the list sees the change.
    patched = api.sessions.PatchSession(
        sessions_pb2.PatchSessionRequest(
            session_id=b.session_id, metadata_json=json.dumps({"user": {"name": "ann"}, "n": None, "k": True})
        )
    ).session
    assert json.loads(patched.metadata_json) == {"t": t, "user": {"name": "ann"}, "k": True}
    assert metadata_of(api, b.session_id) == {"t": t, "user": {"name": "ann"}, "k": True}
    assert set(listed(api, metadata_json=ann)) == {a.session_id, b.session_id, c.session_id}

    # Status: the `ask` session is interrupted once its run stops at the interrupt.
    run = api.runs.StartRun(runs_pb2.StartRunRequest(session_id=c.session_id, input_json="{}")).run
    assert wait(api, run.run_id).status == runs_pb2.RUN_STATUS_INTERRUPTED
    interrupted = [sessions_pb2.SESSION_STATUS_INTERRUPTED]
    assert listed(api, metadata_json=json.dumps({"t": t}), statuses=interrupted) == [c.session_id]
    idle = [sessions_pb2.SESSION_STATUS_IDLE]
    assert set(listed(api, metadata_json=json.dumps({"t": t}), statuses=idle)) == {a.session_id, b.session_id}

    # Order and paging: one at a time, newest first or oldest first, none lost or repeated.
    mine = json.dumps({"t": t})
    assert listed(api, metadata_json=mine, page_size=1) == [c.session_id, b.session_id, a.session_id]
    assert listed(api, metadata_json=mine, page_size=2, ascending=True) == [
        a.session_id,
        b.session_id,
        c.session_id,
    ]
    by_update = listed(api, metadata_json=mine, sort_by=sessions_pb2.SESSION_SORT_BY_UPDATED_AT, page_size=1)
    assert by_update[0] == c.session_id  # its run touched it last
    assert set(by_update) == {a.session_id, b.session_id, c.session_id}


def test_a_copied_session_goes_on_independently(api: Api) -> None:
    t = tag()
    source = create(api, "ask", {"t": t})
    run = api.runs.StartRun(
        runs_pb2.StartRunRequest(session_id=source.session_id, input_json='{"question": "which?"}')
    ).run
    assert wait(api, run.run_id).status == runs_pb2.RUN_STATUS_INTERRUPTED

    copy = api.sessions.CopySession(sessions_pb2.CopySessionRequest(session_id=source.session_id)).session
    assert copy.session_id != source.session_id
    assert json.loads(copy.metadata_json) == {"t": t}
    assert copy.status == sessions_pb2.SESSION_STATUS_INTERRUPTED

    # Each answers the same interrupt its own way; neither sees the other's answer.
    assert resume(api, copy.session_id, "copy").status == runs_pb2.RUN_STATUS_SUCCEEDED
    assert resume(api, source.session_id, "source").status == runs_pb2.RUN_STATUS_SUCCEEDED
    state = api.sessions.GetSessionState

    def values(session_id: str) -> dict[str, Any]:
        got = state(sessions_pb2.GetSessionStateRequest(session_id=session_id)).state.values_json
        return dict(json.loads(got))

    assert values(copy.session_id) == {"question": "which?", "answer": "copy"}
    assert values(source.session_id) == {"question": "which?", "answer": "source"}
    # The copy holds the source's history too (the checkpoints before the answer).
    history = api.sessions.GetSessionHistory(
        sessions_pb2.GetSessionHistoryRequest(session_id=copy.session_id, page_size=100)
    ).states
    assert len(history) >= 3

    # A chosen id for the copy; taken: ALREADY_EXISTS.
    named = f"copy-{t}"
    again = sessions_pb2.CopySessionRequest(session_id=source.session_id, new_session_id=named)
    assert api.sessions.CopySession(again).session.session_id == named
    with pytest.raises(grpc.RpcError) as taken:
        api.sessions.CopySession(again)
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_a_stateless_run_leaves_no_session_behind(api: Api) -> None:
    t = tag()
    request = runs_pb2.StartRunRequest(
        graph_id="linear",
        input_json='{"x": 1}',
        options=runs_pb2.RunOptions(metadata_json=json.dumps({"t": t})),
        on_completion=runs_pb2.ON_COMPLETION_DELETE,
    )
    stream = api.runs.StreamRun(runs_pb2.StreamRunRequest(run=request))
    events = [e for reply in stream for e in reply.events]
    assert events[-1].WhichOneof("kind") == "run_finished"
    assert json.loads(events[-1].run_finished.values_json)["x"] == 4
    session_id = events[0].run_queued.session_id
    for _ in range(100):  # the session goes just after the run's last event is out
        try:
            api.sessions.GetSession(sessions_pb2.GetSessionRequest(session_id=session_id))
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND
            break
        time.sleep(0.05)
    else:
        pytest.fail("the stateless run's session is still there")
    with pytest.raises(grpc.RpcError) as gone:
        api.runs.GetRun(runs_pb2.GetRunRequest(run_id=events[0].run_id))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    # A kept run (the default) keeps its session.
    kept = api.runs.StartRun(runs_pb2.StartRunRequest(graph_id="linear", input_json="{}")).run
    wait(api, kept.run_id)
    api.sessions.GetSession(sessions_pb2.GetSessionRequest(session_id=kept.session_id))


def _stream_then_drop(api: Api, cancel_on_disconnect: bool) -> str:
    """Stream a slow run, read until its first step starts, then close the stream; its id."""
    request = runs_pb2.StreamRunRequest(
        run=runs_pb2.StartRunRequest(graph_id="slow", input_json='{"steps": 20, "delay": 0.1}'),
        cancel_on_disconnect=cancel_on_disconnect,
    )
    call = api.runs.StreamRun(request)
    run_id = ""
    for reply in call:
        run_id = reply.events[0].run_id
        if any(e.WhichOneof("kind") == "superstep_started" for e in reply.events):
            break
    call.cancel()
    assert run_id
    return run_id


def test_a_streamed_run_is_cancelled_with_its_client_when_asked(api: Api) -> None:
    run_id = _stream_then_drop(api, cancel_on_disconnect=True)
    assert wait(api, run_id).status == runs_pb2.RUN_STATUS_CANCELLED


def test_a_streamed_run_goes_on_without_its_client_otherwise(api: Api) -> None:
    run_id = _stream_then_drop(api, cancel_on_disconnect=False)
    ended = wait(api, run_id)
    assert ended.status == runs_pb2.RUN_STATUS_SUCCEEDED
    assert len(json.loads(ended.values_json)["done"]) == 20


def _code(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code(), raised.value.details() or ""


def test_bad_input_is_refused_and_changes_nothing(api: Api) -> None:
    t = tag()
    session = create(api, "linear", {"t": t})
    patch = api.sessions.PatchSession
    code, details = _code(
        lambda: patch(sessions_pb2.PatchSessionRequest(session_id=session.session_id, metadata_json="{t: 1"))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "metadata_json" in details
    code, details = _code(
        lambda: patch(sessions_pb2.PatchSessionRequest(session_id=session.session_id, metadata_json="[1]"))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "metadata_json" in details
    assert metadata_of(api, session.session_id) == {"t": t}
    code, _ = _code(
        lambda: patch(sessions_pb2.PatchSessionRequest(session_id=f"none-{t}", metadata_json="{}"))
    )
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = _code(lambda: api.sessions.CopySession(sessions_pb2.CopySessionRequest(session_id=f"none-{t}")))
    assert code == grpc.StatusCode.NOT_FOUND
    code, details = _code(
        lambda: api.sessions.ListSessions(sessions_pb2.ListSessionsRequest(metadata_json='{"t": '))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "metadata_json" in details
    code, details = _code(
        lambda: api.sessions.ListSessions(sessions_pb2.ListSessionsRequest(page_token="not-a-token"))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in details
    # DELETE is for a run that makes its session: on an existing one it is refused, no run made.
    code, details = _code(
        lambda: api.runs.StartRun(
            runs_pb2.StartRunRequest(
                session_id=session.session_id, input_json="{}", on_completion=runs_pb2.ON_COMPLETION_DELETE
            )
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "on_completion" in details
    runs = api.runs.ListRuns(runs_pb2.ListRunsRequest(session_id=session.session_id)).runs
    assert list(runs) == []
    assert metadata_of(api, session.session_id) == {"t": t}
