"""Input limits: each documented limit answers INVALID_ARGUMENT with a field violation naming the
field, before any work; stored state stays as it was and the server keeps serving."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from stepstream.server.api.limits import RequestLimits, check_request, json_depth
from stepstream.server.core.errors import InvalidArgument
from stepstream.v1 import common_pb2, events_pb2, runs_pb2, sessions_pb2
from tests.rpc import Api

pytestmark = pytest.mark.process

LIMITS = RequestLimits()  # the server's defaults (ServerSettings)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _start(**fields: Any) -> Callable[[Api], Any]:
    return lambda api: api.runs.StartRun(runs_pb2.StartRunRequest(**fields))


CASES: list[tuple[str, Callable[[Api], Any], str]] = [
    (
        "payload over max_payload_bytes",
        _start(graph_id="linear", input_json=json.dumps({"blob": "x" * (LIMITS.max_payload_bytes + 1)})),
        "input_json",
    ),
    (
        "payload deeper than max_payload_depth",
        _start(graph_id="linear", input_json=_nested(LIMITS.max_payload_depth + 1)),
        "input_json",
    ),
    (
        "deep payload inside options",
        _start(
            graph_id="linear",
            input_json="{}",
            options=runs_pb2.RunOptions(configurable_json='{"a": ' + _nested(200) + "}"),
        ),
        "options.configurable_json",
    ),
    (
        "deep resume value in a map",
        _start(
            session_id="s",
            command=common_pb2.Command(resume_by_interrupt_id_json={"i1": _nested(500)}),
        ),
        "command.resume_by_interrupt_id_json[i1]",
    ),
    (
        "too many event kinds requested",
        lambda api: list(
            api.runs.JoinRun(
                runs_pb2.JoinRunRequest(
                    run_id="r", event_kinds=[events_pb2.EVENT_KIND_TASKS] * (LIMITS.max_list_entries + 1)
                )
            )
        ),
        "event_kinds",
    ),
    (
        "too many breakpoints",
        _start(
            graph_id="linear",
            input_json="{}",
            options=runs_pb2.RunOptions(interrupt_before=["a"] * (LIMITS.max_list_entries + 1)),
        ),
        "options.interrupt_before",
    ),
    (
        "id longer than max_string_bytes",
        lambda api: api.runs.GetRun(runs_pb2.GetRunRequest(run_id="r" * (LIMITS.max_string_bytes + 1))),
        "run_id",
    ),
    (
        "page token longer than max_string_bytes",
        lambda api: api.sessions.ListSessions(
            sessions_pb2.ListSessionsRequest(page_token="t" * (LIMITS.max_string_bytes + 1))
        ),
        "page_token",
    ),
    (
        "page size over 1000",
        lambda api: api.sessions.GetSessionHistory(
            sessions_pb2.GetSessionHistoryRequest(session_id="s", page_size=1001)
        ),
        "page_size",
    ),
    (
        "cursor beyond what a store holds",
        lambda api: list(api.runs.JoinRun(runs_pb2.JoinRunRequest(run_id="r", after_seq=2**63))),
        "after_seq",
    ),
    (
        "wait timeout not a number",
        lambda api: api.runs.WaitRun(runs_pb2.WaitRunRequest(run_id="r", timeout_seconds=float("nan"))),
        "timeout_seconds",
    ),
    (
        "negative wait timeout",
        lambda api: api.runs.WaitRun(runs_pb2.WaitRunRequest(run_id="r", timeout_seconds=-1)),
        "timeout_seconds",
    ),
]


def _snapshot(api: Api) -> Any:
    sessions = api.sessions.ListSessions(sessions_pb2.ListSessionsRequest(page_size=1000)).sessions
    runs = api.runs.ListRuns(runs_pb2.ListRunsRequest(page_size=1000)).runs
    return sorted(s.session_id for s in sessions), sorted((r.run_id, r.status) for r in runs)


@pytest.mark.parametrize(("name", "call", "field"), CASES, ids=[c[0] for c in CASES])
def test_a_request_beyond_a_limit_is_invalid_argument_naming_the_field(
    api: Api, name: str, call: Callable[[Api], Any], field: str
) -> None:
    before = _snapshot(api)
    with pytest.raises(grpc.RpcError) as err:
        call(api)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    status = rpc_status.from_call(err.value)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    assert bad.field_violations[0].field == field
    assert "at most" in bad.field_violations[0].description or "finite" in bad.field_violations[0].description
    assert _snapshot(api) == before
    assert api.stream("linear", {"x": 1})[-1].WhichOneof("kind") == "run_finished"


def test_the_session_stream_answers_an_oversized_action_and_stays_open(api: Api) -> None:
    deep = sessions_pb2.SessionStreamRequest(
        request_id="deep",
        start_run=sessions_pb2.StartRun(input_json=_nested(LIMITS.max_payload_depth + 5)),
    )
    requests = [
        sessions_pb2.SessionStreamRequest(
            request_id="open", open=sessions_pb2.OpenSession(graph_id="linear")
        ),
        deep,
        sessions_pb2.SessionStreamRequest(
            request_id="ok", start_run=sessions_pb2.StartRun(input_json='{"x": 1}')
        ),
    ]
    answers = list(api.sessions.SessionStream(iter(requests), timeout=30))
    error = next(a for a in answers if a.request_id == "deep")
    assert error.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert error.error.field == "start_run.input_json"
    kinds = [a.event.WhichOneof("kind") for a in answers if a.request_id == "ok" and a.HasField("event")]
    assert kinds[-1] == "run_finished"


def test_json_depth_skips_brackets_inside_strings() -> None:
    assert json_depth('{"a": "[[[[[[", "b": [1, {"c": []}]}') == 4
    assert json_depth(r'["\"[[[", []]') == 2
    assert json_depth("42") == 0


def test_limits_at_the_boundary_pass() -> None:
    request = runs_pb2.StartRunRequest(
        graph_id="g" * LIMITS.max_string_bytes,
        input_json=_nested(LIMITS.max_payload_depth),
        options=runs_pb2.RunOptions(interrupt_after=["n"] * LIMITS.max_list_entries),
    )
    check_request(request, LIMITS)
    with pytest.raises(InvalidArgument):
        check_request(runs_pb2.StartRunRequest(input_json=_nested(LIMITS.max_payload_depth + 1)), LIMITS)
