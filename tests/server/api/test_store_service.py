"""StoreService over gRPC and through the SDK, against a real `stepstream serve` with API keys and
a store with a semantic index: put/get/search/list/delete per tenant, roles, and the bad-input
table (right status code, the field named, nothing stored)."""

from __future__ import annotations

import json
import pathlib
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from stepstream.client import InvalidArgumentError, PermissionDeniedError, StepstreamClient
from stepstream.v1 import store_pb2, store_pb2_grpc
from tests.security.conftest import Tenants, auth_args
from tests.security.test_fuzz import _methods, fuzz
from tests.support import ROOT, ServerProcess

pytestmark = pytest.mark.process

GRAPHS = ROOT / "tests" / "graphs"
# Above the store's 1 MiB item cap, so the store's own refusal is what answers.
MAX_PAYLOAD = 3 * 1024 * 1024


def store_config(folder: pathlib.Path) -> pathlib.Path:
    config = folder / "stepstream.json"
    config.write_text(
        json.dumps(
            {
                "graphs": {"memory": f"{GRAPHS / 'memory_graphs.py'}:memory"},
                "store": {
                    "index": {
                        "dims": 64,
                        "embed": f"{GRAPHS / 'embeddings.py'}:embed_words",
                        "fields": ["text"],
                    },
                    "ttl": {"refresh_on_read": True, "sweep_interval_minutes": 1},
                },
            }
        )
    )
    return config


@pytest.fixture(scope="module")
def address(tenants: Tenants, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("store-service")
    server = ServerProcess(
        f"sqlite+aiosqlite:///{folder / 'db.sqlite'}",
        *auth_args(tenants),
        "--max-payload-bytes",
        str(MAX_PAYLOAD),
        config=store_config(folder),
    )
    yield server.start()
    server.stop()


class Store:
    """StoreService calls as one tenant."""

    def __init__(self, address: str, key: str) -> None:
        self.channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 8 << 20)])
        self.stub = store_pb2_grpc.StoreServiceStub(self.channel)
        self.metadata = (("x-api-key", key),)

    def __call__(self, method: str, request: Any) -> Any:
        return getattr(self.stub, method)(request, metadata=self.metadata, timeout=30)


@pytest.fixture
def alice(address: str, tenants: Tenants) -> Iterator[Store]:
    store = Store(address, tenants.keys["alice"])
    yield store
    store.channel.close()


@pytest.fixture
def bob(address: str, tenants: Tenants) -> Iterator[Store]:
    store = Store(address, tenants.keys["bob"])
    yield store
    store.channel.close()


def fresh() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def put(store: Store, namespace: list[str], key: str, value: Any, **kw: Any) -> None:
    store(
        "PutItem", store_pb2.PutItemRequest(namespace=namespace, key=key, value_json=json.dumps(value), **kw)
    )


def keys(items: Any) -> list[str]:
    return [i.key for i in items]


def test_put_get_search_list_delete(alice: Store) -> None:
    root = fresh()
    put(alice, [root, "u1"], "tea", {"text": "likes green tea", "kind": "pref"})
    put(alice, [root, "u1"], "city", {"text": "lives in a big city", "kind": "fact"})
    put(alice, [root, "u2"], "coffee", {"text": "drinks black coffee", "kind": "pref"})

    item = alice("GetItem", store_pb2.GetItemRequest(namespace=[root, "u1"], key="tea")).item
    assert (list(item.namespace), item.key, json.loads(item.value_json)) == (
        [root, "u1"],
        "tea",
        {"text": "likes green tea", "kind": "pref"},
    )
    assert item.created_at.seconds > 0 and item.updated_at.seconds >= item.created_at.seconds

    filtered = alice(
        "SearchItems", store_pb2.SearchItemsRequest(namespace_prefix=[root], filter_json='{"kind": "pref"}')
    )
    assert sorted(keys(filtered.items)) == ["coffee", "tea"]
    ranked = alice("SearchItems", store_pb2.SearchItemsRequest(namespace_prefix=[root], query="green tea"))
    assert ranked.items[0].key == "tea" and ranked.items[0].score > ranked.items[-1].score
    paged = alice("SearchItems", store_pb2.SearchItemsRequest(namespace_prefix=[root], limit=2, offset=2))
    assert len(paged.items) == 1

    listed = alice("ListNamespaces", store_pb2.ListNamespacesRequest(prefix=[root]))
    assert [list(n.labels) for n in listed.namespaces] == [[root, "u1"], [root, "u2"]]
    shallow = alice("ListNamespaces", store_pb2.ListNamespacesRequest(prefix=[root], max_depth=1))
    assert [list(n.labels) for n in shallow.namespaces] == [[root]]
    by_suffix = alice("ListNamespaces", store_pb2.ListNamespacesRequest(prefix=[root], suffix=["u2"]))
    assert [list(n.labels) for n in by_suffix.namespaces] == [[root, "u2"]]

    alice("DeleteItem", store_pb2.DeleteItemRequest(namespace=[root, "u1"], key="tea"))
    with pytest.raises(grpc.RpcError) as err:
        alice("GetItem", store_pb2.GetItemRequest(namespace=[root, "u1"], key="tea"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "tea" in (err.value.details() or "")


def test_another_tenant_sees_nothing(alice: Store, bob: Store) -> None:
    root = fresh()
    put(alice, [root], "secret", {"text": "alice's"})
    with pytest.raises(grpc.RpcError) as err:
        bob("GetItem", store_pb2.GetItemRequest(namespace=[root], key="secret"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert not bob("SearchItems", store_pb2.SearchItemsRequest(namespace_prefix=[root])).items
    assert not bob("ListNamespaces", store_pb2.ListNamespacesRequest(prefix=[root])).namespaces
    # Bob writing the same address makes his own item; alice's is untouched.
    put(bob, [root], "secret", {"text": "bob's"})
    bob("DeleteItem", store_pb2.DeleteItemRequest(namespace=[root], key="secret"))
    mine = alice("GetItem", store_pb2.GetItemRequest(namespace=[root], key="secret")).item
    assert json.loads(mine.value_json) == {"text": "alice's"}


def test_a_reader_reads_but_does_not_write(address: str, tenants: Tenants, alice: Store) -> None:
    root = fresh()
    put(alice, [root], "k", {"text": "v"})
    reader = Store(address, tenants.keys["alice-reader"])
    try:
        assert reader("GetItem", store_pb2.GetItemRequest(namespace=[root], key="k")).item.key == "k"
        for method, request in [
            ("PutItem", store_pb2.PutItemRequest(namespace=[root], key="k2", value_json="{}")),
            ("DeleteItem", store_pb2.DeleteItemRequest(namespace=[root], key="k")),
        ]:
            with pytest.raises(grpc.RpcError) as err:
                reader(method, request)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        reader.channel.close()
    assert keys(alice("SearchItems", store_pb2.SearchItemsRequest(namespace_prefix=[root])).items) == ["k"]


OVERSIZED = json.dumps({"text": "x" * (1024 * 1024 + 10)})

# (method, request builder given a fresh root label, the field named, a piece of the message)
BAD_INPUT: list[tuple[str, Any, str, str]] = [
    (
        "PutItem",
        lambda r: store_pb2.PutItemRequest(key="k", value_json="{}"),
        "namespace",
        "at least one label",
    ),
    (
        "PutItem",
        lambda r: store_pb2.PutItemRequest(namespace=[r, "a.b"], key="k", value_json="{}"),
        "namespace",
        "periods",
    ),
    (
        "PutItem",
        lambda r: store_pb2.PutItemRequest(namespace=[r, ""], key="k", value_json="{}"),
        "namespace",
        "empty",
    ),
    (
        "PutItem",
        lambda r: store_pb2.PutItemRequest(namespace=["langgraph", r], key="k", value_json="{}"),
        "namespace",
        "langgraph",
    ),
    ("PutItem", lambda r: store_pb2.PutItemRequest(namespace=[r], value_json="{}"), "key", "required"),
    (
        "PutItem",
        lambda r: store_pb2.PutItemRequest(namespace=[r], key="k", value_json="{no"),
        "value_json",
        "JSON",
    ),
    (
        "PutItem",
        lambda r: store_pb2.PutItemRequest(namespace=[r], key="k", value_json="[1]"),
        "value_json",
        "object",
    ),
    (
        "PutItem",
        lambda r: store_pb2.PutItemRequest(namespace=[r], key="k", value_json=OVERSIZED),
        "value_json",
        "the store accepts at most 1048576 bytes",
    ),
    (
        "PutItem",
        lambda r: store_pb2.PutItemRequest(namespace=[r], key="k", value_json="{}", ttl_minutes=-5),
        "ttl_minutes",
        ">= 0",
    ),
    (
        "SearchItems",
        lambda r: store_pb2.SearchItemsRequest(namespace_prefix=[r], filter_json='{"kind": '),
        "filter_json",
        "not valid JSON",
    ),
    (
        "SearchItems",
        lambda r: store_pb2.SearchItemsRequest(namespace_prefix=[r], filter_json='{"n": {"$near": 1}}'),
        "filter_json",
        "unknown filter operator",
    ),
    (
        "SearchItems",
        lambda r: store_pb2.SearchItemsRequest(namespace_prefix=[r, "x.y"]),
        "namespace_prefix",
        "periods",
    ),
    ("GetItem", lambda r: store_pb2.GetItemRequest(namespace=[f"{r}.x"], key="k"), "namespace", "periods"),
    ("DeleteItem", lambda r: store_pb2.DeleteItemRequest(namespace=[], key="k"), "namespace", "at least one"),
]


@pytest.mark.parametrize(
    ("method", "build", "field", "reason"),
    BAD_INPUT,
    ids=[
        "no-namespace",
        "dotted-label",
        "empty-label",
        "reserved-root",
        "no-key",
        "malformed-value",
        "value-not-object",
        "oversized-item",
        "negative-ttl",
        "malformed-filter",
        "unknown-operator",
        "dotted-prefix",
        "get-dotted",
        "delete-no-namespace",
    ],
)
def test_bad_input_is_invalid_argument_naming_the_field_and_stores_nothing(
    alice: Store, method: str, build: Any, field: str, reason: str
) -> None:
    root = fresh()
    with pytest.raises(grpc.RpcError) as err:
        alice(method, build(root))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason in (err.value.details() or ""), err.value.details()
    status = rpc_status.from_call(err.value)
    assert status is not None
    violations = [
        v
        for detail in status.details
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR)
        for v in _bad_request(detail).field_violations
    ]
    assert [v.field for v in violations] == [field]
    # Nothing stored, and the server still serves.
    assert not alice("ListNamespaces", store_pb2.ListNamespacesRequest(prefix=[root])).namespaces
    assert not alice("ListNamespaces", store_pb2.ListNamespacesRequest(prefix=["langgraph"])).namespaces
    put(alice, [root], "ok", {"text": "fine"})
    assert alice("GetItem", store_pb2.GetItemRequest(namespace=[root], key="ok")).item.key == "ok"


def _bad_request(detail: Any) -> error_details_pb2.BadRequest:
    bad = error_details_pb2.BadRequest()
    detail.Unpack(bad)
    return bad


async def test_through_the_sdk(address: str, tenants: Tenants) -> None:
    root = fresh()
    async with (
        StepstreamClient(address, api_key=tenants.keys["alice"]) as alice_client,
        StepstreamClient(address, api_key=tenants.keys["bob"]) as bob_client,
    ):
        await alice_client.store.put((root, "u1"), "tea", {"text": "likes green tea", "kind": "pref"})
        await alice_client.store.put((root, "u1"), "rain", {"text": "hates rain"}, index=False, ttl=60)
        item = await alice_client.store.get((root, "u1"), "tea")
        assert item is not None and item.value == {"text": "likes green tea", "kind": "pref"}
        assert item.namespace == (root, "u1") and item.created_at is not None and item.score is None
        assert await alice_client.store.get((root, "u1"), "nothing") is None
        assert await bob_client.store.get((root, "u1"), "tea") is None

        ranked = await alice_client.store.search((root,), query="green tea")
        assert ranked[0].key == "tea" and ranked[0].score is not None
        filtered = await alice_client.store.search((root,), filter={"kind": "pref"})
        assert [i.key for i in filtered] == ["tea"]
        assert await alice_client.store.list_namespaces(prefix=(root,)) == [(root, "u1")]
        assert await bob_client.store.list_namespaces(prefix=(root,)) == []

        with pytest.raises(InvalidArgumentError) as bad:
            await alice_client.store.put((root, "a.b"), "k", {"text": "x"})
        assert [v.field for v in bad.value.field_violations] == ["namespace"]
        with pytest.raises(InvalidArgumentError) as bad:
            await alice_client.store.search((root,), filter={"n": {"$near": 1}})
        assert [v.field for v in bad.value.field_violations] == ["filter_json"]

        await alice_client.store.delete((root, "u1"), "tea")
        assert await alice_client.store.get((root, "u1"), "tea") is None
        assert [i.key for i in await alice_client.store.search((root,))] == ["rain"]

    async with StepstreamClient(address, api_key=tenants.keys["alice-reader"]) as reader:
        assert [i.key for i in await reader.store.search((root,))] == ["rain"]
        with pytest.raises(PermissionDeniedError):
            await reader.store.delete((root, "u1"), "rain")


def test_fuzzed_store_requests_get_proper_codes_and_touch_no_other_tenant(
    address: str, tenants: Tenants
) -> None:
    bob = Store(address, tenants.keys["bob"])
    root = fresh()
    try:
        put(bob, [root, "u1"], "kept", {"text": "bob's"})
        # Labels and keys the fuzzer may aim at: bob's, the reserved root, and junk.
        pool = [root, "u1", "kept", "langgraph", "a.b", "", "*", '{"text": "x"}', '{"n": {"$gt": 1}}']
        seen = fuzz(address, _methods(store_pb2), pool, tenants.keys["alice"])
        assert sum(seen.values()) > 50, seen
        assert seen.get("OK", 0) > 0 and seen.get("INVALID_ARGUMENT", 0) > 0, seen
        # Still serving, and bob's item as it was.
        item = bob("GetItem", store_pb2.GetItemRequest(namespace=[root, "u1"], key="kept")).item
        assert json.loads(item.value_json) == {"text": "bob's"}
        listed = bob("ListNamespaces", store_pb2.ListNamespacesRequest(prefix=[root]))
        assert [list(n.labels) for n in listed.namespaces] == [[root, "u1"]]
    finally:
        bob.channel.close()
