"""A run's context reaches the graph's nodes through LangGraph's Runtime (core/context.py), over
gRPC, the session stream and the SDK; a context that does not fit the graph's context_schema is
refused naming the field, with nothing stored; a run taken over after its replica died passes
the same context again."""

from __future__ import annotations

import json
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from stepstream.client import InvalidArgumentError, StepstreamClient
from stepstream.server.core.assistants import default_assistant_id
from stepstream.v1 import graphs_pb2, runs_pb2, sessions_pb2
from tests.rpc import Api, kinds
from tests.support import ServerProcess

pytestmark = pytest.mark.process


def start(api: Api, inp: Any, context: Any = None, **fields: Any) -> runs_pb2.Run:
    request = runs_pb2.StartRunRequest(
        input_json=json.dumps(inp),
        context_json=json.dumps(context) if context is not None else "",
        **fields,
    )
    return api.runs.StartRun(request).run


def field_of(error: grpc.RpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    return str(bad.field_violations[0].field)


def stored(api: Api) -> tuple[list[str], list[str]]:
    sessions = api.sessions.ListSessions(sessions_pb2.ListSessionsRequest(page_size=1000)).sessions
    runs = api.runs.ListRuns(runs_pb2.ListRunsRequest(page_size=1000)).runs
    return sorted(s.session_id for s in sessions), sorted(r.run_id for r in runs)


def test_the_graph_lists_its_context_schema_and_default_assistant(api: Api) -> None:
    graph = api.graphs.GetGraph(graphs_pb2.GetGraphRequest(graph_id="context")).graph
    schema = json.loads(graph.context_schema_json)
    assert schema["title"] == "Persona" and schema["required"] == ["user"]
    assert schema["properties"]["tone"]["enum"] == ["plain", "loud"]
    assert graph.default_assistant_id == default_assistant_id("context")
    linear = api.graphs.GetGraph(graphs_pb2.GetGraphRequest(graph_id="linear")).graph
    assert linear.context_schema_json == ""  # declares none


def test_nodes_read_the_context_through_the_runtime(api: Api) -> None:
    run = start(api, {"steps": 2}, {"user": "ann", "limit": "5"}, graph_id="context")
    done = api.wait(run.run_id)
    assert done.status == runs_pb2.RUN_STATUS_SUCCEEDED
    # Validated into the dataclass: the default filled in, "5" read as the int field it is.
    assert json.loads(done.values_json)["seen"] == ["ann/plain/5", "ann/plain/5"]
    assert json.loads(done.context_json) == {"user": "ann", "limit": "5"}
    assert done.assistant_id == default_assistant_id("context") and done.assistant_version == 0


def test_a_run_without_context_gets_none(api: Api) -> None:
    done = api.wait(start(api, {}, graph_id="context").run_id)
    assert json.loads(done.values_json)["seen"] == ["-"] and done.context_json == ""


@pytest.mark.parametrize(
    ("context", "field"),
    [
        ({"tone": "loud"}, "context_json.user"),  # a required field missing
        ({"user": "ann", "tone": "soft"}, "context_json.tone"),  # not one of the literals
        ({"user": "ann", "limit": "many"}, "context_json.limit"),  # not an int
    ],
)
def test_a_bad_context_is_refused_naming_the_field_and_nothing_is_stored(
    api: Api, context: dict[str, Any], field: str
) -> None:
    before = stored(api)
    with pytest.raises(grpc.RpcError) as err:
        start(api, {}, context, graph_id="context")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_of(err.value) == field
    assert "Persona" in (err.value.details() or "")
    assert stored(api) == before


def test_a_context_that_is_not_an_object_is_refused(api: Api) -> None:
    with pytest.raises(grpc.RpcError) as err:
        api.runs.StartRun(runs_pb2.StartRunRequest(graph_id="context", input_json="{}", context_json="[1]"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_of(err.value) == "context_json"


def test_the_session_stream_passes_each_runs_context(api: Api) -> None:
    def requests() -> Any:
        yield sessions_pb2.SessionStreamRequest(
            request_id="open", open=sessions_pb2.OpenSession(graph_id="context")
        )
        yield sessions_pb2.SessionStreamRequest(
            request_id="bad",
            start_run=sessions_pb2.StartRun(input_json="{}", context_json=json.dumps({"tone": "x"})),
        )
        yield sessions_pb2.SessionStreamRequest(
            request_id="good",
            start_run=sessions_pb2.StartRun(input_json="{}", context_json=json.dumps({"user": "cy"})),
        )

    answers = list(api.sessions.SessionStream(requests()))
    error = next(a.error for a in answers if a.request_id == "bad" and a.WhichOneof("kind") == "error")
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert error.field == "start_run.context_json.user"
    run_id = next(a.run.run_id for a in answers if a.WhichOneof("kind") == "run")
    done = api.wait(run_id)
    assert json.loads(done.values_json)["seen"] == ["cy/plain/3"]


@pytest.fixture
async def client(server_address: str) -> AsyncIterator[StepstreamClient]:
    async with StepstreamClient(server_address, timeout=30) as sdk:
        yield sdk


async def test_the_sdk_passes_a_context_to_start_stream_and_the_session_stream(
    client: StepstreamClient,
) -> None:
    graph = await client.graphs.get("context")
    assert graph.context_schema["title"] == "Persona"
    run = await client.runs.start("context", {}, context={"user": "dee", "tone": "loud"})
    assert (await client.runs.wait(run.run_id)).values["seen"] == ["dee/loud/3"]
    events = [e async for e in client.runs.stream("context", {"steps": 1}, context={"user": "eve"})]
    finished = await client.runs.get(events[-1].run_id)
    assert finished.values["seen"] == ["eve/plain/3"] and finished.context == {"user": "eve"}
    async with client.session_stream(graph_id="context") as stream:
        streamed = await stream.start_run({}, context={"user": "fay", "limit": 1})
    assert (await client.runs.wait(streamed.run_id)).values["seen"] == ["fay/plain/1"]
    with pytest.raises(InvalidArgumentError) as err:
        await client.runs.start("context", {}, context={"user": 7})
    assert [v.field for v in err.value.field_violations] == ["context_json.user"]


def test_a_run_taken_over_after_its_replica_died_gets_the_same_context(tmp_path: pathlib.Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'stepstream.db'}"
    first = ServerProcess(db)
    api = Api(first.start())
    run = start(api, {"steps": 5, "delay": 0.15}, {"user": "gus", "tone": "loud"}, graph_id="context")
    events: list[Any] = []
    for reply in api.runs.JoinRun(runs_pb2.JoinRunRequest(run_id=run.run_id)):
        events += reply.events
        if kinds(events).count("superstep_finished") >= 2:
            break
    api.close()
    first.kill()

    second = ServerProcess(db)
    api = Api(second.start())
    try:
        done = api.wait(run.run_id, timeout=60)
        assert done.status == runs_pb2.RUN_STATUS_SUCCEEDED and done.attempt == 2
        assert json.loads(done.values_json)["seen"] == ["gus/loud/3"] * 5
    finally:
        api.close()
        second.stop()
