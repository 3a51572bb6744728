"""The store in LangGraph's HTTP API through the pinned langgraph-sdk, against a live
`stepstream serve --http-port` with API keys: put/get/search/list/delete per tenant, a missing
item as 200 null, 422s for bad bodies with nothing stored, reads open to a reader."""

from __future__ import annotations

import pathlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.server.http.door import KEYS, Door, door

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    with door(pathlib.Path(tmp_path_factory.mktemp("store-door"))) as server:
        yield server


@pytest.fixture
async def clients(live: Door) -> AsyncIterator[dict[str, LangGraphClient]]:
    made = {who: get_client(url=live.url, api_key=key) for who, key in KEYS.items()}
    yield made
    for sdk in made.values():
        await sdk.aclose()


def fresh() -> str:
    return f"h{uuid.uuid4().hex[:10]}"


async def test_put_get_search_list_delete_per_tenant(clients: dict[str, LangGraphClient]) -> None:
    alice, bob, reader = clients["alice"], clients["bob"], clients["reader"]
    root = fresh()
    await alice.store.put_item([root, "u1"], "a", {"text": "alpha", "kind": "x"})
    await alice.store.put_item([root, "u1"], "b", {"text": "beta", "kind": "y"}, ttl=60)
    await alice.store.put_item([root, "u2"], "c", {"text": "gamma", "kind": "x"}, index=False)

    item: Any = await alice.store.get_item([root, "u1"], "a")
    assert {k: item[k] for k in ("namespace", "key", "value")} == {
        "namespace": [root, "u1"],
        "key": "a",
        "value": {"text": "alpha", "kind": "x"},
    }
    assert item["created_at"] and item["updated_at"]
    assert await alice.store.get_item([root, "u1"], "missing") is None

    found = await alice.store.search_items([root], filter={"kind": "x"})
    assert sorted(i["key"] for i in found["items"]) == ["a", "c"]
    assert all("score" in i for i in found["items"])
    assert len((await alice.store.search_items([root], limit=2, offset=2))["items"]) == 1
    listed = await alice.store.list_namespaces(prefix=[root])
    assert listed == {"namespaces": [[root, "u1"], [root, "u2"]]}
    assert await alice.store.list_namespaces(prefix=[root], max_depth=1) == {"namespaces": [[root]]}

    # Another tenant sees none of it; a reader of alice's reads it.
    assert await bob.store.get_item([root, "u1"], "a") is None
    assert (await bob.store.search_items([root]))["items"] == []
    assert await bob.store.list_namespaces(prefix=[root]) == {"namespaces": []}
    await bob.store.delete_item([root, "u1"], "a")
    assert (await reader.store.get_item([root, "u1"], "a")) is not None
    assert len((await reader.store.search_items([root]))["items"]) == 3
    with pytest.raises(httpx.HTTPStatusError) as denied:
        await reader.store.put_item([root, "u1"], "z", {"text": "no"})
    assert denied.value.response.status_code == 403

    await alice.store.delete_item([root, "u1"], "a")
    assert await alice.store.get_item([root, "u1"], "a") is None
    assert sorted(i["key"] for i in (await alice.store.search_items([root]))["items"]) == ["b", "c"]


def _bad(root: str) -> list[tuple[str, str, Any, str]]:
    """(method, path, body, a piece of the detail) of calls the door must answer 422."""
    return [
        ("PUT", "/store/items", {"namespace": root, "key": "a", "value": {}}, "namespace"),
        ("PUT", "/store/items", {"namespace": [root, "a.b"], "key": "a", "value": {}}, "periods"),
        ("PUT", "/store/items", {"namespace": [root, ""], "key": "a", "value": {}}, "namespace"),
        ("PUT", "/store/items", {"namespace": ["langgraph", root], "key": "a", "value": {}}, "langgraph"),
        ("PUT", "/store/items", {"namespace": [root], "key": "a", "value": [1]}, "value"),
        ("PUT", "/store/items", {"namespace": [root], "value": {}}, "key"),
        (
            "PUT",
            "/store/items",
            {"namespace": [root], "key": "a", "value": {"t": "x" * 1_100_000}},
            "at most",
        ),
        ("POST", "/store/items/search", {"namespace_prefix": root}, "namespace_prefix"),
        (
            "POST",
            "/store/items/search",
            {"namespace_prefix": [root], "filter": {"n": {"$near": 1}}},
            "operator",
        ),
        ("POST", "/store/items/search", {"namespace_prefix": [root], "limit": 0}, "limit"),
        ("POST", "/store/namespaces", {"prefix": [root], "max_depth": 0}, "max_depth"),
        ("DELETE", "/store/items", {"namespace": [], "key": "a"}, "namespace"),
    ]


def test_bad_bodies_are_422_and_store_nothing(live: Door) -> None:
    root = fresh()
    with live.http() as http:
        for method, path, body, detail in _bad(root):
            answer = http.request(method, path, json=body)
            assert answer.status_code == 422, (method, path, body, answer.text)
            assert detail in answer.json()["detail"], answer.text
        assert http.get("/store/items", params={"namespace": f"{root}.x.y", "key": "a"}).json() is None
        malformed = http.put(
            "/store/items", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert malformed.status_code == 422
        assert http.post("/store/namespaces", json={"prefix": [root]}).json() == {"namespaces": []}
        assert http.post("/store/namespaces", json={"prefix": ["langgraph"]}).json() == {"namespaces": []}
        # Still serving, and a good put lands.
        assert (
            http.put("/store/items", json={"namespace": [root], "key": "ok", "value": {}}).status_code == 204
        )
        assert http.get("/store/items", params={"namespace": root, "key": "ok"}).json()["key"] == "ok"
