"""Tenant isolation of assistants: another tenant's assistant answers NOT_FOUND to every call and
is never listed, a run cannot name it, and each tenant's default assistants are its own."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from stepstream.v1 import assistants_pb2, assistants_pb2_grpc, runs_pb2
from tests.rpc import Api
from tests.security.conftest import Tenants, api_key_api

pytestmark = pytest.mark.process


@pytest.fixture(scope="module")
def apis(secured_server: str, tenants: Tenants) -> Iterator[tuple[Api, Api]]:
    alice, bob = (api_key_api(secured_server, tenants.keys[name]) for name in ("alice", "bob"))
    yield alice, bob
    alice.close()
    bob.close()


def stub(api: Api) -> Any:
    return assistants_pb2_grpc.AssistantServiceStub(api.channel)


def everything(api: Api) -> list[tuple[str, int, str]]:
    found = stub(api).SearchAssistants(assistants_pb2.SearchAssistantsRequest(page_size=1000)).assistants
    return sorted((a.assistant_id, a.version, a.config_json) for a in found)


CALLS: list[tuple[str, Callable[[Api, str], Any]]] = [
    ("get", lambda api, aid: stub(api).GetAssistant(assistants_pb2.GetAssistantRequest(assistant_id=aid))),
    (
        "update",
        lambda api, aid: stub(api).UpdateAssistant(
            assistants_pb2.UpdateAssistantRequest(assistant_id=aid, config_json='{"model": "stolen"}')
        ),
    ),
    (
        "set version",
        lambda api, aid: stub(api).SetAssistantVersion(
            assistants_pb2.SetAssistantVersionRequest(assistant_id=aid, version=1)
        ),
    ),
    (
        "versions",
        lambda api, aid: stub(api).ListAssistantVersions(
            assistants_pb2.ListAssistantVersionsRequest(assistant_id=aid)
        ),
    ),
    (
        "delete",
        lambda api, aid: stub(api).DeleteAssistant(assistants_pb2.DeleteAssistantRequest(assistant_id=aid)),
    ),
    (
        "run as it",
        lambda api, aid: api.runs.StartRun(runs_pb2.StartRunRequest(assistant_id=aid, input_json="{}")),
    ),
]


@pytest.mark.parametrize("call", [c[1] for c in CALLS], ids=[c[0] for c in CALLS])
def test_another_tenants_assistant_is_not_found(
    apis: tuple[Api, Api], call: Callable[[Api, str], Any]
) -> None:
    alice, bob = apis
    created = (
        stub(alice)
        .CreateAssistant(
            assistants_pb2.CreateAssistantRequest(graph_id="linear", name="alice's", config_json='{"k": 1}')
        )
        .assistant
    )
    before = everything(alice), everything(bob)
    with pytest.raises(grpc.RpcError) as err:
        call(bob, created.assistant_id)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert (everything(alice), everything(bob)) == before
    assert created.assistant_id not in [a for a, _, _ in everything(bob)]


def test_each_tenant_has_its_own_default_assistants(apis: tuple[Api, Api]) -> None:
    alice, bob = apis
    request = assistants_pb2.UpdateAssistantRequest(assistant_id="linear", config_json='{"who": "bob"}')
    bobs = stub(bob).UpdateAssistant(request).assistant
    alices = stub(alice).GetAssistant(assistants_pb2.GetAssistantRequest(assistant_id="linear")).assistant
    assert bobs.assistant_id == alices.assistant_id  # the same derived id ...
    assert json.loads(bobs.config_json) == {"who": "bob"} and json.loads(alices.config_json) == {}
    assert alices.version == 1  # ... but bob's update is bob's alone

    # A caller-chosen id is a tenant's own too: both may hold "shared-name".
    for api in (alice, bob):
        made = (
            stub(api)
            .CreateAssistant(
                assistants_pb2.CreateAssistantRequest(graph_id="linear", assistant_id="shared-name")
            )
            .assistant
        )
        assert made.assistant_id == "shared-name" and made.version == 1


def test_a_reader_may_read_assistants_but_not_change_them(secured_server: str, tenants: Tenants) -> None:
    reader = api_key_api(secured_server, tenants.keys["alice-reader"])
    try:
        assert stub(reader).GetAssistant(assistants_pb2.GetAssistantRequest(assistant_id="linear")).assistant
        with pytest.raises(grpc.RpcError) as err:
            stub(reader).CreateAssistant(assistants_pb2.CreateAssistantRequest(graph_id="linear"))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        reader.close()
