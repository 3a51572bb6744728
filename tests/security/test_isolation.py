"""Tenant isolation: every RPC aimed at another tenant's session or run answers as if it did not
exist (NOT_FOUND; empty lists), and changes nothing of that tenant's."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from stepstream.v1 import common_pb2, runs_pb2, sessions_pb2
from tests.rpc import Api, resume
from tests.security.conftest import Tenants, api_key_api, bearer_api

pytestmark = pytest.mark.process

Ids = dict[str, str]


@pytest.fixture(scope="module")
def alice(secured_server: str, tenants: Tenants) -> Iterator[Api]:
    api = api_key_api(secured_server, tenants.keys["alice"])
    yield api
    api.close()


@pytest.fixture(scope="module")
def alices(alice: Api) -> Iterator[Ids]:
    """Alice's sessions and runs: ended, waiting at an interrupt, and busy."""
    done = alice.stream("linear", {"x": 1})
    asked = alice.stream("ask", {"question": "q?"})
    busy = alice.start("slow", {"steps": 600, "delay": 0.1})
    ids = {
        "done_session": alice.get_run(done[0].run_id).session_id,
        "done_run": done[0].run_id,
        "asked_session": alice.get_run(asked[0].run_id).session_id,
        "asked_run": asked[0].run_id,
        "busy_session": busy.session_id,
        "busy_run": busy.run_id,
    }
    yield ids
    # Bounded: a run that cannot be stopped fails the teardown instead of hanging the suite.
    alice.runs.CancelRun(runs_pb2.CancelRunRequest(run_id=ids["busy_run"]), timeout=60)


def _snapshot(api: Api, ids: Ids) -> Any:
    sessions = api.sessions.ListSessions(sessions_pb2.ListSessionsRequest(page_size=1000)).sessions
    runs = api.runs.ListRuns(runs_pb2.ListRunsRequest(page_size=1000)).runs
    return (
        sorted((s.session_id, s.status, s.metadata_json) for s in sessions),
        sorted((r.run_id, r.status) for r in runs),
        api.state(ids["done_session"]).SerializeToString(),
        api.state(ids["asked_session"]).SerializeToString(),
        len(
            api.sessions.GetSessionHistory(
                sessions_pb2.GetSessionHistoryRequest(session_id=ids["done_session"], page_size=1000)
            ).states
        ),
    )


def _stream_open(api: Api, **fields: Any) -> sessions_pb2.SessionStreamResponse:
    request = sessions_pb2.SessionStreamRequest(request_id="r1", open=sessions_pb2.OpenSession(**fields))
    return next(iter(api.sessions.SessionStream(iter([request]), timeout=10)))


Call = Callable[[Api, Ids], Any]
NF = grpc.StatusCode.NOT_FOUND
MATRIX: list[tuple[str, Call, grpc.StatusCode]] = [
    (
        "GetSession",
        lambda a, i: a.sessions.GetSession(sessions_pb2.GetSessionRequest(session_id=i["done_session"])),
        NF,
    ),
    (
        "DeleteSession (force)",
        lambda a, i: a.sessions.DeleteSession(
            sessions_pb2.DeleteSessionRequest(session_id=i["busy_session"], force=True)
        ),
        NF,
    ),
    (
        "GetSessionState",
        lambda a, i: a.sessions.GetSessionState(
            sessions_pb2.GetSessionStateRequest(session_id=i["done_session"])
        ),
        NF,
    ),
    (
        "GetSessionHistory",
        lambda a, i: a.sessions.GetSessionHistory(
            sessions_pb2.GetSessionHistoryRequest(session_id=i["done_session"])
        ),
        NF,
    ),
    (
        "UpdateSessionState",
        lambda a, i: a.sessions.UpdateSessionState(
            sessions_pb2.UpdateSessionStateRequest(session_id=i["done_session"], values_json='{"x": 99}')
        ),
        NF,
    ),
    ("StartRun on the session", lambda a, i: a.start(session_id=i["done_session"], inp={"x": 5}), NF),
    (
        "StartRun resuming the interrupt",
        lambda a, i: a.runs.StartRun(
            runs_pb2.StartRunRequest(session_id=i["asked_session"], command=resume("bob's answer"))
        ),
        NF,
    ),
    (
        "StartRun interrupting the busy session",
        lambda a, i: a.start(
            session_id=i["busy_session"], inp={}, busy_policy=common_pb2.BUSY_POLICY_INTERRUPT
        ),
        NF,
    ),
    ("StreamRun on the session", lambda a, i: a.stream(session_id=i["done_session"], inp={"x": 5}), NF),
    ("JoinRun", lambda a, i: a.join(i["busy_run"]), NF),
    ("GetRun", lambda a, i: a.get_run(i["done_run"]), NF),
    ("CancelRun", lambda a, i: a.runs.CancelRun(runs_pb2.CancelRunRequest(run_id=i["busy_run"])), NF),
    (
        "CancelRun with rollback",
        lambda a, i: a.runs.CancelRun(runs_pb2.CancelRunRequest(run_id=i["busy_run"], rollback=True)),
        NF,
    ),
    ("WaitRun", lambda a, i: a.wait(i["done_run"], timeout=1), NF),
    (
        # Caller-chosen ids share one namespace: a taken id is refused whoever holds it
        # (SECURITY.md), and the holder's run is neither returned nor touched.
        "StartRun reusing the run id",
        lambda a, i: a.runs.StartRun(
            runs_pb2.StartRunRequest(graph_id="linear", input_json="{}", run_id=i["done_run"])
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    ),
    (
        "CreateSession reusing the session id",
        lambda a, i: a.sessions.CreateSession(
            sessions_pb2.CreateSessionRequest(graph_id="linear", session_id=i["done_session"])
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    ),
]


@pytest.mark.parametrize("credential", ["api-key", "jwt"])
@pytest.mark.parametrize(("name", "call", "code"), MATRIX, ids=[m[0] for m in MATRIX])
def test_another_tenants_resources_are_invisible_and_untouched(
    secured_server: str,
    tenants: Tenants,
    alice: Api,
    alices: Ids,
    credential: str,
    name: str,
    call: Call,
    code: grpc.StatusCode,
) -> None:
    bob = (
        api_key_api(secured_server, tenants.keys["bob"])
        if credential == "api-key"
        else bearer_api(secured_server, tenants.token("bob"))
    )
    try:
        before = _snapshot(alice, alices)
        with pytest.raises(grpc.RpcError) as err:
            call(bob, alices)
        assert err.value.code() == code, err.value.details()
        # Nothing about the holder is revealed.
        assert "alice" not in (err.value.details() or "")
        assert _snapshot(alice, alices) == before
        assert alice.get_run(alices["busy_run"]).status in (
            runs_pb2.RUN_STATUS_RUNNING,
            runs_pb2.RUN_STATUS_QUEUED,
        )
    finally:
        bob.close()


def test_lists_and_streams_of_another_tenant_show_nothing(
    secured_server: str, tenants: Tenants, alices: Ids
) -> None:
    bob = api_key_api(secured_server, tenants.keys["bob"])
    try:
        sessions = bob.sessions.ListSessions(sessions_pb2.ListSessionsRequest(page_size=1000)).sessions
        assert not {s.session_id for s in sessions} & set(alices.values())
        for session_id in (alices["done_session"], alices["busy_session"]):
            runs = bob.runs.ListRuns(runs_pb2.ListRunsRequest(session_id=session_id, page_size=1000)).runs
            assert list(runs) == []
        opened = _stream_open(bob, session_id=alices["asked_session"])
        assert opened.error.code == grpc.StatusCode.NOT_FOUND.value[0]
        opened = _stream_open(bob, session_id=alices["busy_session"], resume_run_id=alices["busy_run"])
        assert opened.error.code == grpc.StatusCode.NOT_FOUND.value[0]
    finally:
        bob.close()


def test_an_unknown_id_and_another_tenants_id_answer_alike(
    secured_server: str, tenants: Tenants, alices: Ids
) -> None:
    bob = api_key_api(secured_server, tenants.keys["bob"])
    try:
        answers = []
        for run_id in (alices["done_run"], "no-such-run-anywhere"):
            with pytest.raises(grpc.RpcError) as err:
                bob.get_run(run_id)
            answers.append((err.value.code(), (err.value.details() or "").replace(run_id, "ID")))
        assert answers[0] == answers[1]
    finally:
        bob.close()


def test_each_tenant_sees_its_own(secured_server: str, tenants: Tenants, alices: Ids) -> None:
    bob = api_key_api(secured_server, tenants.keys["bob"])
    try:
        done = bob.stream("linear", {"x": 7})
        assert done[-1].WhichOneof("kind") == "run_finished"
        mine = bob.runs.ListRuns(runs_pb2.ListRunsRequest(page_size=1000)).runs
        assert done[0].run_id in {r.run_id for r in mine}
        assert not {r.run_id for r in mine} & set(alices.values())
        assert bob.values(bob.get_run(done[0].run_id).session_id)["x"] >= 7
    finally:
        bob.close()
