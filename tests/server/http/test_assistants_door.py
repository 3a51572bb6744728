"""Saved assistants through the pinned langgraph-sdk against a live `stepstream serve --http-port`
with API keys: create, get, search (saved beside the defaults), count, update into versions, set
an earlier version live, delete; a run as a saved assistant gets its context; another tenant's
assistant is a 404 and stays as it was; bad bodies are 422s with nothing stored."""

from __future__ import annotations

import pathlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from stepstream.server.core.assistants import default_assistant_id
from tests.server.http.door import KEYS, Door, door

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    with door(pathlib.Path(tmp_path_factory.mktemp("assistants-door"))) as server:
        yield server


@pytest.fixture
async def clients(live: Door) -> AsyncIterator[dict[str, LangGraphClient]]:
    made = {who: get_client(url=live.url, api_key=key) for who, key in KEYS.items()}
    yield made
    for sdk in made.values():
        await sdk.aclose()


def tag() -> str:
    return uuid.uuid4().hex[:8]


async def test_create_get_search_update_versions_delete(clients: dict[str, LangGraphClient]) -> None:
    alice = clients["alice"]
    mark = tag()
    made: Any = await alice.assistants.create(
        "remember", context={"user_id": "ada"}, metadata={"mark": mark}, name=f"ada-{mark}"
    )
    assert made["graph_id"] == "remember" and made["version"] == 1
    assert made["context"] == {"user_id": "ada"} and made["metadata"] == {"mark": mark}
    assert made["assistant_id"] != default_assistant_id("remember")

    got: Any = await alice.assistants.get(made["assistant_id"])
    assert got == made

    found = await alice.assistants.search(metadata={"mark": mark})
    assert [a["assistant_id"] for a in found] == [made["assistant_id"]]
    by_graph = await alice.assistants.search(graph_id="remember", limit=100)
    ids = {a["assistant_id"] for a in by_graph}
    assert {made["assistant_id"], default_assistant_id("remember")} <= ids
    assert await alice.assistants.count(metadata={"mark": mark}) == 1

    updated: Any = await alice.assistants.update(made["assistant_id"], context={"user_id": "grace"})
    assert updated["version"] == 2 and updated["context"] == {"user_id": "grace"}
    versions = await alice.assistants.get_versions(made["assistant_id"])
    assert sorted(v["version"] for v in versions) == [1, 2]
    back: Any = await alice.assistants.set_latest(made["assistant_id"], 1)
    assert back["version"] == 1 and back["context"] == {"user_id": "ada"}

    schemas: Any = await alice.assistants.get_schemas(made["assistant_id"])
    assert schemas["graph_id"] == "remember"
    assert "user_id" in schemas["context_schema"]["properties"]

    await alice.assistants.delete(made["assistant_id"])
    with pytest.raises(httpx.HTTPStatusError) as gone:
        await alice.assistants.get(made["assistant_id"])
    assert gone.value.response.status_code == 404


async def test_a_run_as_a_saved_assistant_gets_its_context(clients: dict[str, LangGraphClient]) -> None:
    alice = clients["alice"]
    user = f"u{tag()}"
    made: Any = await alice.assistants.create("remember", context={"user_id": user})
    thread: Any = await alice.threads.create()
    run: Any = await alice.runs.wait(thread["thread_id"], made["assistant_id"], input={"note": "first"})
    assert run["memories"] == ["first"]
    # The note went under the assistant's user: a run as the default assistant with the same
    # user finds it, one with another user does not.
    same: Any = await alice.runs.wait(None, "remember", input={"note": "x"}, context={"user_id": user})
    assert same["memories"] == ["first", "x"]
    runs = await alice.runs.list(thread["thread_id"])
    assert runs[0]["assistant_id"] == made["assistant_id"]
    assert runs[0]["kwargs"]["context"] == {"user_id": user}


async def test_another_tenants_assistant_is_not_found_and_unchanged(
    clients: dict[str, LangGraphClient], live: Door
) -> None:
    alice, bob = clients["alice"], clients["bob"]
    made: Any = await alice.assistants.create("chat", metadata={"who": "alice"})
    aid = made["assistant_id"]
    with live.http("bob") as http:
        for method, path, body in (
            ("GET", f"/assistants/{aid}", None),
            ("PATCH", f"/assistants/{aid}", {"metadata": {"who": "bob"}}),
            ("DELETE", f"/assistants/{aid}", None),
            ("POST", f"/assistants/{aid}/versions", {}),
            ("POST", f"/assistants/{aid}/latest", {"version": 1}),
            ("GET", f"/assistants/{aid}/schemas", None),
            ("GET", f"/assistants/{aid}/graph", None),
            ("POST", "/runs/wait", {"assistant_id": aid, "input": {}}),
        ):
            answer = http.request(method, path, json=body)
            assert answer.status_code == 404, (method, path, answer.text)
    assert await bob.assistants.search(metadata={"who": "alice"}) == []
    assert await alice.assistants.get(aid) == made


async def test_bad_bodies_are_422_and_store_nothing(live: Door, clients: dict[str, LangGraphClient]) -> None:
    mark = tag()
    with live.http() as http:
        for body in (
            {},
            {"graph_id": "no_such_graph", "metadata": {"mark": mark}},
            {"graph_id": "remember", "context": "not an object", "metadata": {"mark": mark}},
            {"graph_id": "remember", "context": {"user_id": 7}, "metadata": {"mark": mark}},
            {"graph_id": "remember", "assistant_id": "bad id!", "metadata": {"mark": mark}},
            {"graph_id": "remember", "if_exists": "sometimes", "metadata": {"mark": mark}},
        ):
            answer = http.post("/assistants", json=body)
            assert answer.status_code == 422, (body, answer.text)
            assert answer.json()["detail"]
        taken = http.post("/assistants", json={"graph_id": "chat", "assistant_id": f"a-{mark}"})
        assert taken.status_code == 200
        again = http.post("/assistants", json={"graph_id": "chat", "assistant_id": f"a-{mark}"})
        assert again.status_code == 409
        kept = http.post(
            "/assistants", json={"graph_id": "chat", "assistant_id": f"a-{mark}", "if_exists": "do_nothing"}
        )
        assert kept.status_code == 200 and kept.json() == taken.json()
        default = http.delete(f"/assistants/{default_assistant_id('chat')}")
        assert default.status_code == 409 and "default" in default.json()["detail"]
        assert http.post("/assistants/count", json={"metadata": {"mark": mark}}).json() == 0
        assert http.get(f"/assistants/{default_assistant_id('chat')}").status_code == 200
