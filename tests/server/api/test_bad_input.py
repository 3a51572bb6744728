"""Bad input gets the right status code and an actionable message; stored state stays intact."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from stepstream.v1 import assistants_pb2, assistants_pb2_grpc, common_pb2, runs_pb2, sessions_pb2
from tests.rpc import Api, resume
from tests.support import ROOT

pytestmark = pytest.mark.process

Case = tuple[str, Callable[[Api, dict[str, str]], Any], grpc.StatusCode, str]


def _start(**kw: Any) -> Callable[[Api, dict[str, str]], Any]:
    def call(api: Api, ids: dict[str, str]) -> Any:
        fields = {k: (v.format(**ids) if k == "session_id" else v) for k, v in kw.items()}
        return api.runs.StartRun(runs_pb2.StartRunRequest(**fields))

    return call


CASES: list[Case] = [
    (
        "malformed input JSON",
        _start(graph_id="linear", input_json="{x: 1"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input_json",
    ),
    (
        "malformed configurable JSON",
        _start(graph_id="linear", input_json="{}", options=runs_pb2.RunOptions(configurable_json="[1,")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "options.configurable_json",
    ),
    (
        "configurable not an object",
        _start(graph_id="linear", input_json="{}", options=runs_pb2.RunOptions(configurable_json="[1]")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "options.configurable_json",
    ),
    ("unknown graph", _start(graph_id="nope", input_json="{}"), grpc.StatusCode.NOT_FOUND, ""),
    ("unknown session", _start(session_id="no-such-session", input_json="{}"), grpc.StatusCode.NOT_FOUND, ""),
    ("no graph and no session", _start(input_json="{}"), grpc.StatusCode.INVALID_ARGUMENT, "graph_id"),
    (
        "graph differs from the session's",
        _start(graph_id="ask", session_id="{linear_session}", input_json="{}"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "graph_id",
    ),
    (
        "resume with no pending interrupt",
        _start(session_id="{linear_session}", command=resume("x")),
        grpc.StatusCode.FAILED_PRECONDITION,
        "",
    ),
    (
        "input and command together",
        _start(session_id="{ask_session}", input_json="{}", command=resume("x")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "command",
    ),
    (
        "unknown breakpoint node",
        _start(graph_id="linear", input_json="{}", options=runs_pb2.RunOptions(interrupt_before=["zz"])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "options.interrupt_before",
    ),
    (
        "oversized message",
        _start(graph_id="linear", input_json=json.dumps({"blob": "x" * (5 * 1024 * 1024)})),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "",
    ),
    (
        "unknown run",
        lambda api, ids: api.runs.GetRun(runs_pb2.GetRunRequest(run_id="no-such-run")),
        grpc.StatusCode.NOT_FOUND,
        "",
    ),
    (
        "join an unknown run",
        lambda api, ids: list(api.runs.JoinRun(runs_pb2.JoinRunRequest(run_id="no-such-run"))),
        grpc.StatusCode.NOT_FOUND,
        "",
    ),
    (
        "cancel an ended run",
        lambda api, ids: api.runs.CancelRun(runs_pb2.CancelRunRequest(run_id=ids["linear_run"])),
        grpc.StatusCode.FAILED_PRECONDITION,
        "",
    ),
    (
        "bad page token",
        lambda api, ids: api.sessions.ListSessions(sessions_pb2.ListSessionsRequest(page_token="garbage")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_token",
    ),
    (
        "page too large",
        lambda api, ids: api.runs.ListRuns(runs_pb2.ListRunsRequest(page_size=100_000)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_size",
    ),
    (
        "session id taken",
        lambda api, ids: api.sessions.CreateSession(
            sessions_pb2.CreateSessionRequest(graph_id="linear", session_id=ids["linear_session"])
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "",
    ),
    (
        "invalid session id",
        lambda api, ids: api.sessions.CreateSession(
            sessions_pb2.CreateSessionRequest(graph_id="linear", session_id="bad id with spaces")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "session_id",
    ),
    (
        "state update that does not fit",
        lambda api, ids: api.sessions.UpdateSessionState(
            sessions_pb2.UpdateSessionStateRequest(
                session_id=ids["linear_session"], values_json="{", as_node="a"
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "values_json",
    ),
    (
        "state of an unknown checkpoint",
        lambda api, ids: api.sessions.GetSessionState(
            sessions_pb2.GetSessionStateRequest(session_id=ids["linear_session"], checkpoint_id="nope")
        ),
        grpc.StatusCode.NOT_FOUND,
        "",
    ),
    (
        "unknown assistant",
        _start(assistant_id="no-such-assistant", input_json="{}"),
        grpc.StatusCode.NOT_FOUND,
        "",
    ),
    (
        "context that does not fit the graph's context_schema",
        _start(graph_id="context", input_json="{}", context_json='{"user": "ann", "tone": "soft"}'),
        grpc.StatusCode.INVALID_ARGUMENT,
        "context_json.tone",
    ),
    (
        "context without a required field",
        _start(graph_id="context", input_json="{}", context_json='{"tone": "loud"}'),
        grpc.StatusCode.INVALID_ARGUMENT,
        "context_json.user",
    ),
    (
        "malformed context JSON",
        _start(graph_id="context", input_json="{}", context_json="{user"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "context_json",
    ),
    (
        "second run on a busy session (reject)",
        _start(session_id="{busy_session}", input_json="{}", options=runs_pb2.RunOptions(busy_policy=1)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "",
    ),
]


@pytest.fixture(scope="module")
def existing(server_address: str) -> dict[str, str]:
    api = Api(server_address)
    linear = api.stream("linear", {"x": 1})
    ask = api.stream("ask", {"question": "q?"})
    busy = api.start("slow", {"steps": 100, "delay": 0.1})
    yield_ids = {
        "linear_session": api.get_run(linear[0].run_id).session_id,
        "linear_run": linear[0].run_id,
        "ask_session": api.get_run(ask[0].run_id).session_id,
        "busy_session": busy.session_id,
        "busy_run": busy.run_id,
    }
    api.close()
    return yield_ids


def _snapshot(api: Api, ids: dict[str, str]) -> Any:
    sessions = api.sessions.ListSessions(sessions_pb2.ListSessionsRequest(page_size=1000)).sessions
    runs = api.runs.ListRuns(runs_pb2.ListRunsRequest(page_size=1000)).runs
    assistants = assistants_pb2_grpc.AssistantServiceStub(api.channel).SearchAssistants(
        assistants_pb2.SearchAssistantsRequest(page_size=1000)
    )
    return (
        sorted(s.session_id for s in sessions),
        sorted((r.run_id, r.status) for r in runs if r.run_id != ids["busy_run"]),
        assistants,
        api.state(ids["linear_session"]).SerializeToString(),
        api.state(ids["ask_session"]).SerializeToString(),
    )


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_cleanly(api: Api, existing: dict[str, str], case: Case) -> None:
    _, call, code, field = case
    before = _snapshot(api, existing)
    with pytest.raises(grpc.RpcError) as err:
        call(api, existing)
    assert err.value.code() == code, err.value.details()
    assert err.value.details()
    if field:
        status = rpc_status.from_call(err.value)  # type: ignore[arg-type]
        assert status is not None
        bad = error_details_pb2.BadRequest()
        assert status.details[0].Unpack(bad)
        assert bad.field_violations[0].field == field
    assert _snapshot(api, existing) == before
    assert api.stream("linear", {"x": 1})[-1].WhichOneof("kind") == "run_finished"  # still serving


def test_busy_run_is_cancelled_at_the_end(api: Api, existing: dict[str, str]) -> None:
    run = api.runs.CancelRun(runs_pb2.CancelRunRequest(run_id=existing["busy_run"])).run
    assert run.status == runs_pb2.RUN_STATUS_CANCELLED


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not valid JSON"),
        ('{"graphs": {}}', 'key "graphs"'),
        ('{"graphs": {"g": "no-colon"}}', 'key "graphs.g"'),
        ('{"graphs": {"g": "./missing.py:graph"}}', "no such file"),
        ('{"graphs": {"g": {"path": "./graphs.py:linear", "max_concurrency": -1}}}', "max_concurrency"),
        (
            '{"graphs": {"g": "./graphs.py:linear"}, "store": {"ttl": {"default_ttl": -1}}}',
            'key "store.ttl.default_ttl"',
        ),
    ],
)
def test_invalid_config_file_is_refused_at_start(tmp_path: pathlib.Path, content: str, reason: str) -> None:
    config = tmp_path / "stepstream.json"
    config.write_text(content)
    (tmp_path / "graphs.py").write_text((ROOT / "tests" / "graphs" / "graphs.py").read_text())
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stepstream.cli.main",
            "serve",
            "--port",
            "0",
            "--config",
            str(config),
            "--db",
            f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert str(config) in proc.stderr and reason in proc.stderr


def test_resume_answer_by_interrupt_id_and_both_forms_refused(api: Api) -> None:
    first = api.stream("ask", {"question": "q?"})
    session_id = api.get_run(first[0].run_id).session_id
    interrupt_id = first[-1].run_finished.interrupts[0].interrupt_id
    both = common_pb2.Command(resume_json='"a"', resume_by_interrupt_id_json={interrupt_id: '"b"'})
    with pytest.raises(grpc.RpcError) as err:
        api.stream(session_id=session_id, command=both)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    by_id = common_pb2.Command(resume_by_interrupt_id_json={interrupt_id: '"by id"'})
    done = api.stream(session_id=session_id, command=by_id)
    assert json.loads(done[-1].run_finished.values_json)["answer"] == "by id"
