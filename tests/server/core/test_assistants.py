"""Assistants over gRPC and through the SDK (core/assistants.py): versions, search, runs that use
an assistant's saved settings, the graph's id as its default assistant's, and refusals that
leave nothing stored."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from stepstream.client import FailedPreconditionError, NotFoundError, StepstreamClient
from stepstream.server.core.assistants import default_assistant_id
from stepstream.v1 import assistants_pb2, assistants_pb2_grpc, runs_pb2, sessions_pb2
from tests.rpc import Api
from tests.server.core.test_context import field_of, stored

pytestmark = pytest.mark.process


class Assistants:
    """AssistantService calls with JSON fields given as Python values."""

    def __init__(self, api: Api) -> None:
        self.stub = assistants_pb2_grpc.AssistantServiceStub(api.channel)

    def create(self, graph_id: str, **fields: Any) -> assistants_pb2.Assistant:
        request = assistants_pb2.CreateAssistantRequest(graph_id=graph_id, **_encoded(fields))
        return self.stub.CreateAssistant(request).assistant

    def get(self, assistant_id: str) -> assistants_pb2.Assistant:
        return self.stub.GetAssistant(assistants_pb2.GetAssistantRequest(assistant_id=assistant_id)).assistant

    def update(self, assistant_id: str, **fields: Any) -> assistants_pb2.Assistant:
        request = assistants_pb2.UpdateAssistantRequest(assistant_id=assistant_id, **_encoded(fields))
        return self.stub.UpdateAssistant(request).assistant

    def search(self, **fields: Any) -> assistants_pb2.SearchAssistantsResponse:
        return self.stub.SearchAssistants(assistants_pb2.SearchAssistantsRequest(**_encoded(fields)))


def _encoded(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        (f"{k}_json" if k in ("config", "context", "metadata") else k): (
            json.dumps(v) if k in ("config", "context", "metadata") else v
        )
        for k, v in fields.items()
    }


def settings(assistant: assistants_pb2.Assistant) -> tuple[Any, Any, Any]:
    return (
        json.loads(assistant.config_json),
        json.loads(assistant.context_json),
        json.loads(assistant.metadata_json),
    )


@pytest.fixture
def assistants(api: Api) -> Assistants:
    return Assistants(api)


def test_create_update_versions_set_version_and_delete(api: Api, assistants: Assistants) -> None:
    created = assistants.create(
        "context",
        name="support bot",
        description="answers politely",
        config={"model": "small"},
        context={"user": "ann"},
        metadata={"team": "support"},
    )
    assert created.version == 1 and not created.is_default and created.graph_id == "context"
    assert settings(created) == ({"model": "small"}, {"user": "ann"}, {"team": "support"})
    assert assistants.get(created.assistant_id) == created

    # Fields left empty keep the live version's values.
    second = assistants.update(created.assistant_id, config={"model": "large"})
    assert second.version == 2 and second.name == "support bot"
    assert settings(second) == ({"model": "large"}, {"user": "ann"}, {"team": "support"})
    third = assistants.update(created.assistant_id, name="renamed", context={"user": "bo", "tone": "loud"})
    assert (third.version, third.name) == (3, "renamed")
    assert assistants.get(created.assistant_id).version == 3

    first_page = assistants.stub.ListAssistantVersions(
        assistants_pb2.ListAssistantVersionsRequest(assistant_id=created.assistant_id, page_size=2)
    )
    rest = assistants.stub.ListAssistantVersions(
        assistants_pb2.ListAssistantVersionsRequest(
            assistant_id=created.assistant_id, page_size=2, page_token=first_page.next_page_token
        )
    )
    assert [v.version for v in first_page.versions] == [3, 2] and first_page.next_page_token
    assert [v.version for v in rest.versions] == [1] and not rest.next_page_token
    assert settings(rest.versions[0]) == settings(created) and rest.versions[0].name == "support bot"

    back = assistants.stub.SetAssistantVersion(
        assistants_pb2.SetAssistantVersionRequest(assistant_id=created.assistant_id, version=1)
    ).assistant
    assert back.version == 1 and settings(back) == settings(created) and back.name == "support bot"
    # An update after going back saves the next number, never overwriting version 3.
    assert assistants.update(created.assistant_id, description="v4").version == 4

    with pytest.raises(grpc.RpcError) as err:
        assistants.stub.SetAssistantVersion(
            assistants_pb2.SetAssistantVersionRequest(assistant_id=created.assistant_id, version=9)
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    assistants.stub.DeleteAssistant(assistants_pb2.DeleteAssistantRequest(assistant_id=created.assistant_id))
    with pytest.raises(grpc.RpcError) as err:
        assistants.get(created.assistant_id)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_run_as_an_assistant_gets_its_settings_under_its_own(api: Api, assistants: Assistants) -> None:
    assistant = assistants.create(
        "context",
        config={"model": "saved", "temperature": 0},
        context={"user": "ann", "tone": "loud"},
        metadata={"team": "a", "shared": "assistant"},
    )
    request = runs_pb2.StartRunRequest(
        assistant_id=assistant.assistant_id,
        input_json="{}",
        context_json=json.dumps({"limit": 7}),
        options=runs_pb2.RunOptions(metadata_json=json.dumps({"shared": "run"})),
    )
    done = api.wait(api.runs.StartRun(request).run.run_id)
    assert done.status == runs_pb2.RUN_STATUS_SUCCEEDED, done.error_message
    assert done.graph_id == "context"
    assert (done.assistant_id, done.assistant_version) == (assistant.assistant_id, 1)
    assert json.loads(done.values_json) == {"seen": ["ann/loud/7"], "model": "saved"}
    assert json.loads(done.context_json) == {"user": "ann", "tone": "loud", "limit": 7}
    assert json.loads(done.options.configurable_json) == {"model": "saved", "temperature": 0}
    assert json.loads(done.options.metadata_json) == {"team": "a", "shared": "run"}

    # The run's own values win key by key; a later version is what later runs get.
    assistants.update(assistant.assistant_id, config={"model": "newer"})
    request = runs_pb2.StartRunRequest(
        assistant_id=assistant.assistant_id,
        input_json="{}",
        context_json=json.dumps({"user": "cy"}),
        options=runs_pb2.RunOptions(configurable_json=json.dumps({"model": "mine"})),
    )
    done = api.wait(api.runs.StartRun(request).run.run_id)
    assert json.loads(done.values_json) == {"seen": ["cy/loud/3"], "model": "mine"}
    assert done.assistant_version == 2


def test_an_assistant_may_hold_part_of_a_context_that_runs_complete(api: Api, assistants: Assistants) -> None:
    assistant = assistants.create("context", context={"tone": "loud"})
    request = runs_pb2.StartRunRequest(
        assistant_id=assistant.assistant_id, input_json="{}", context_json=json.dumps({"user": "zed"})
    )
    done = api.wait(api.runs.StartRun(request).run.run_id)
    assert json.loads(done.values_json)["seen"] == ["zed/loud/3"]
    before = stored(api)
    with pytest.raises(grpc.RpcError) as err:  # the whole context a run gets must fit
        api.runs.StartRun(runs_pb2.StartRunRequest(assistant_id=assistant.assistant_id, input_json="{}"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field_of(err.value) == "context_json.user"
    assert stored(api) == before


def test_the_graphs_id_names_its_default_assistant(api: Api, assistants: Assistants) -> None:
    default = assistants.get("linear")
    assert default.assistant_id == default_assistant_id("linear") and default.is_default
    assert default.graph_id == "linear" and default.name == "linear"
    assert assistants.get(default.assistant_id) == default
    done = api.wait(
        api.runs.StartRun(
            runs_pb2.StartRunRequest(assistant_id="linear", input_json=json.dumps({"x": 1}))
        ).run.run_id
    )
    assert json.loads(done.values_json)["x"] == 4
    assert done.assistant_id == default.assistant_id and done.assistant_version == default.version

    with pytest.raises(grpc.RpcError) as err:
        assistants.stub.DeleteAssistant(assistants_pb2.DeleteAssistantRequest(assistant_id="linear"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as err:
        assistants.create("linear", assistant_id="linear")
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert assistants.get("linear") == default  # unchanged by either


def test_search_by_graph_metadata_and_name_paged(assistants: Assistants) -> None:
    tag = uuid.uuid4().hex
    made = [
        assistants.create("context", name=f"alpha {tag}", metadata={"tag": tag, "env": {"tier": "prod"}}),
        assistants.create("linear", name=f"beta {tag}", metadata={"tag": tag, "env": {"tier": "dev"}}),
        assistants.create(
            "context", name=f"gamma {tag}", metadata={"tag": tag, "env": {"tier": "prod"}, "n": 1}
        ),
    ]
    ids = [a.assistant_id for a in made]
    mine = assistants.search(metadata={"tag": tag}, page_size=1000).assistants
    assert [a.assistant_id for a in mine] == ids[::-1]  # newest first
    prod = assistants.search(metadata={"tag": tag, "env": {"tier": "prod"}}).assistants
    assert [a.assistant_id for a in prod] == [ids[2], ids[0]]
    assert [a.assistant_id for a in assistants.search(metadata={"tag": tag, "n": 1}).assistants] == [ids[2]]
    assert assistants.search(metadata={"tag": tag, "n": "1"}).assistants == []  # types differ
    linear = assistants.search(graph_id="linear", metadata={"tag": tag}).assistants
    assert [a.assistant_id for a in linear] == [ids[1]]
    assert [a.assistant_id for a in assistants.search(name=f"mma {tag}").assistants] == [ids[2]]

    first = assistants.search(metadata={"tag": tag}, page_size=2)
    second = assistants.search(metadata={"tag": tag}, page_size=2, page_token=first.next_page_token)
    assert [a.assistant_id for a in [*first.assistants, *second.assistants]] == ids[::-1]
    assert not second.next_page_token
    # Every graph's default assistant is listed too.
    defaults = {a.graph_id for a in assistants.search(page_size=1000).assistants if a.is_default}
    assert {"linear", "context", "ask"} <= defaults


@pytest.mark.parametrize(
    ("call", "code", "field"),
    [
        (lambda a: a.create("nope"), grpc.StatusCode.NOT_FOUND, ""),
        (
            lambda a: a.create("context", context={"tone": "soft", "user": "x"}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "context_json.tone",
        ),
        (
            lambda a: a.create("context", assistant_id="bad id"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "assistant_id",
        ),
        (
            lambda a: a.stub.CreateAssistant(
                assistants_pb2.CreateAssistantRequest(graph_id="context", config_json="[1]")
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "config_json",
        ),
        (lambda a: a.get("no-such-assistant"), grpc.StatusCode.NOT_FOUND, ""),
        (lambda a: a.update("no-such-assistant", name="x"), grpc.StatusCode.NOT_FOUND, ""),
        (
            lambda a: a.update("context", context={"tone": "loud", "limit": "lots"}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "context_json.limit",
        ),
        (lambda a: a.search(metadata_json="{"), grpc.StatusCode.INVALID_ARGUMENT, "metadata_json"),
        (lambda a: a.search(page_token="garbage"), grpc.StatusCode.INVALID_ARGUMENT, "page_token"),
    ],
    ids=[
        "unknown graph",
        "bad context",
        "bad id",
        "config not an object",
        "unknown get",
        "unknown update",
        "bad context update",
        "bad metadata filter",
        "bad page token",
    ],
)
def test_bad_assistant_requests_are_refused_and_change_nothing(
    assistants: Assistants, call: Any, code: grpc.StatusCode, field: str
) -> None:
    before = assistants.search(page_size=1000)
    with pytest.raises(grpc.RpcError) as err:
        call(assistants)
    assert err.value.code() == code, err.value.details()
    if field:
        assert field_of(err.value) == field
    assert assistants.search(page_size=1000) == before


def test_a_run_of_an_unknown_assistant_is_not_found_and_stores_nothing(api: Api) -> None:
    before = stored(api)
    with pytest.raises(grpc.RpcError) as err:
        api.runs.StartRun(runs_pb2.StartRunRequest(assistant_id="no-such-assistant", input_json="{}"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-assistant" in (err.value.details() or "")
    with pytest.raises(grpc.RpcError) as err:
        api.runs.StartRun(runs_pb2.StartRunRequest(graph_id="linear", assistant_id="linear", input_json="{}"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field_of(err.value) == "assistant_id"
    assert stored(api) == before


def test_a_session_stream_opened_with_an_assistant_runs_as_it(api: Api, assistants: Assistants) -> None:
    # A partial context: the runs give the rest.
    assistant = assistants.create("context", config={"model": "streamed"}, context={"user": "dan"})

    def requests() -> Any:
        open_ = sessions_pb2.OpenSession(assistant_id=assistant.assistant_id)
        yield sessions_pb2.SessionStreamRequest(request_id="open", open=open_)
        start = sessions_pb2.StartRun(input_json="{}", context_json=json.dumps({"tone": "loud"}))
        yield sessions_pb2.SessionStreamRequest(request_id="run", start_run=start)

    answers = list(api.sessions.SessionStream(requests()))
    session = next(a.session for a in answers if a.WhichOneof("kind") == "session")
    assert session.graph_id == "context"
    run = next(a.run for a in answers if a.WhichOneof("kind") == "run")
    done = api.wait(run.run_id)
    assert done.assistant_id == assistant.assistant_id
    assert json.loads(done.values_json) == {"seen": ["dan/loud/3"], "model": "streamed"}


@pytest.fixture
async def client(server_address: str) -> AsyncIterator[StepstreamClient]:
    async with StepstreamClient(server_address, timeout=30) as sdk:
        yield sdk


async def test_the_sdk_manages_assistants_and_runs_them(client: StepstreamClient) -> None:
    tag = uuid.uuid4().hex
    made = await client.assistants.create(
        "context", name="sdk", config={"model": "m1"}, context={"user": "eve"}, metadata={"tag": tag}
    )
    assert (await client.assistants.get(made.assistant_id)) == made
    updated = await client.assistants.update(made.assistant_id, config={"model": "m2"})
    assert updated.version == 2 and updated.context == {"user": "eve"}
    versions = [v.version async for v in client.assistants.versions(made.assistant_id, page_size=1)]
    assert versions == [2, 1]
    assert (await client.assistants.set_version(made.assistant_id, 1)).config == {"model": "m1"}
    assert [a.assistant_id async for a in client.assistants.search(metadata={"tag": tag})] == [
        made.assistant_id
    ]

    run = await client.runs.start(assistant_id=made.assistant_id, input={}, context={"limit": 2})
    done = await client.runs.wait(run.run_id)
    assert done.values == {"seen": ["eve/plain/2"], "model": "m1"}
    assert (done.assistant_id, done.assistant_version) == (made.assistant_id, 1)
    graph = await client.graphs.get("context")
    default = await client.assistants.get(graph.default_assistant_id)
    assert default.is_default and default == await client.assistants.get("context")
    async with client.session_stream(assistant_id=made.assistant_id) as stream:
        streamed = await stream.start_run({}, context={"tone": "loud"})
    assert (await client.runs.wait(streamed.run_id)).values["seen"] == ["eve/loud/3"]

    with pytest.raises(FailedPreconditionError):
        await client.assistants.delete("context")
    await client.assistants.delete(made.assistant_id)
    with pytest.raises(NotFoundError):
        await client.assistants.get(made.assistant_id)
    with pytest.raises(NotFoundError):
        await client.runs.start(assistant_id=made.assistant_id, input={})
