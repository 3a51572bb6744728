"""The core's store operations over the real store on SQLite: each refusal names its field, an
absent item is NotFound, nothing refused is stored, and tenants see only their own items."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest

from stepstream.server.core.errors import InvalidArgument, NotFound
from stepstream.server.core.longterm import ListNamespaces, LongTermStore, PutItem, SearchItems
from stepstream.server.storage.db import create_engine, upgrade_async
from stepstream.server.storage.store import SQLStore


@pytest.fixture
async def longterm(tmp_path: pathlib.Path) -> AsyncIterator[LongTermStore]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    await upgrade_async(url)
    engine = create_engine(url)
    store = SQLStore(engine, max_item_bytes=1024)
    ops = LongTermStore()
    ops.attach(store)
    yield ops
    await engine.dispose()


def put(
    namespace: tuple[str, ...] = ("notes", "u1"), key: str = "k", value: str = '{"text": "hi"}', **kw: object
) -> PutItem:
    return PutItem(namespace=namespace, key=key, value_json=value, **kw)  # type: ignore[arg-type]


async def test_put_get_search_list_delete(longterm: LongTermStore) -> None:
    await longterm.put("alice", put(value='{"text": "hi", "kind": "pref"}'))
    await longterm.put(
        "alice", put(namespace=("notes", "u2"), key="k2", value='{"text": "yo", "kind": "fact"}')
    )
    item = await longterm.get("alice", ("notes", "u1"), "k")
    assert (item.namespace, item.key, item.value) == (("notes", "u1"), "k", {"text": "hi", "kind": "pref"})
    found = await longterm.search("alice", SearchItems(("notes",), filter_json='{"kind": "fact"}'))
    assert [(i.namespace, i.key) for i in found] == [(("notes", "u2"), "k2")]
    assert await longterm.list_namespaces("alice", ListNamespaces(prefix=("notes",))) == [
        ("notes", "u1"),
        ("notes", "u2"),
    ]
    assert await longterm.list_namespaces("alice", ListNamespaces(max_depth=1)) == [("notes",)]
    await longterm.delete("alice", ("notes", "u1"), "k")
    with pytest.raises(NotFound):
        await longterm.get("alice", ("notes", "u1"), "k")
    await longterm.delete("alice", ("notes", "u1"), "k")  # deleting what is gone is no error


async def test_tenants_see_only_their_own(longterm: LongTermStore) -> None:
    await longterm.put("alice", put())
    with pytest.raises(NotFound):
        await longterm.get("bob", ("notes", "u1"), "k")
    assert await longterm.search("bob", SearchItems(())) == []
    assert await longterm.list_namespaces("bob", ListNamespaces()) == []
    await longterm.delete("bob", ("notes", "u1"), "k")
    assert (await longterm.get("alice", ("notes", "u1"), "k")).value == {"text": "hi"}
    run_view = longterm.for_run("bob")
    assert run_view is not None and await run_view.aget(("notes", "u1"), "k") is None


@pytest.mark.parametrize(
    ("request_", "field", "reason"),
    [
        (put(namespace=()), "namespace", "at least one label"),
        (put(namespace=("a.b",)), "namespace", "cannot contain periods"),
        (put(namespace=("a", "")), "namespace", "empty strings"),
        (put(namespace=("langgraph", "x")), "namespace", 'cannot be "langgraph"'),
        (put(key=""), "key", "is required"),
        (put(key="a\x00b"), "key", "NUL"),
        (put(value=""), "value_json", "is required"),
        (put(value="{not json"), "value_json", "not valid JSON"),
        (put(value="[1, 2]"), "value_json", "must be a JSON object"),
        (put(value='{"text": "' + "x" * 2000 + '"}'), "value_json", "at most 1024 bytes"),
        (put(ttl_minutes=-1.0), "ttl_minutes", "positive number"),
    ],
    ids=[
        "no-namespace",
        "dotted-label",
        "empty-label",
        "reserved-root",
        "no-key",
        "nul-key",
        "no-value",
        "malformed-value",
        "value-not-object",
        "oversized",
        "negative-ttl",
    ],
)
async def test_bad_puts_name_their_field_and_store_nothing(
    longterm: LongTermStore, request_: PutItem, field: str, reason: str
) -> None:
    with pytest.raises(InvalidArgument) as exc:
        await longterm.put("alice", request_)
    assert exc.value.field == field and reason in exc.value.description, exc.value
    assert await longterm.search("alice", SearchItems((), limit=100)) == []
    assert await longterm.list_namespaces("alice", ListNamespaces()) == []


@pytest.mark.parametrize(
    ("request_", "field", "reason"),
    [
        (SearchItems((), filter_json="{bad"), "filter_json", "not valid JSON"),
        (SearchItems((), filter_json='["kind"]'), "filter_json", "must be a JSON object"),
        (SearchItems((), filter_json='{"n": {"$near": 3}}'), "filter_json", "unknown filter operator"),
        (SearchItems(("a.b",)), "namespace_prefix", "periods"),
        (SearchItems((), limit=5000), "limit", "between 1 and 1000"),
        (SearchItems((), offset=-1), "offset", ">= 0"),
    ],
    ids=["malformed-filter", "filter-not-object", "unknown-operator", "dotted-prefix", "limit", "offset"],
)
async def test_bad_searches_name_their_field(
    longterm: LongTermStore, request_: SearchItems, field: str, reason: str
) -> None:
    with pytest.raises(InvalidArgument) as exc:
        await longterm.search("alice", request_)
    assert exc.value.field == field and reason in exc.value.description, exc.value


async def test_bad_reads_name_their_field(longterm: LongTermStore) -> None:
    with pytest.raises(InvalidArgument) as exc:
        await longterm.get("alice", (), "k")
    assert exc.value.field == "namespace"
    with pytest.raises(InvalidArgument) as exc:
        await longterm.delete("alice", ("a.b",), "k")
    assert exc.value.field == "namespace"
    with pytest.raises(InvalidArgument) as exc:
        await longterm.list_namespaces("alice", ListNamespaces(limit=1001))
    assert exc.value.field == "limit"


async def test_no_store_attached() -> None:
    ops = LongTermStore()
    assert ops.for_run("alice") is None
    with pytest.raises(NotFound):
        await ops.get("alice", ("a",), "k")
