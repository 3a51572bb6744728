"""The long-term Store against `BaseStore`'s documented contract.

No published suite covers `BaseStore`, so this module is one: every contract
test runs on LangGraph's `InMemoryStore` (the reference: whatever it does not
do is not asserted of it), on ours on SQLite and on ours on PostgreSQL (a
throwaway server). Tests of what only ours offers — TTLs (InMemoryStore
refuses them), tenants, the size cap, created_at kept on overwrite — run on
ours only. TTLs run on a clock the test moves: states are asserted, never
durations.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import pathlib
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    InvalidNamespaceError,
    ListNamespacesOp,
    MatchCondition,
    PutOp,
    SearchOp,
    TTLConfig,
)
from langgraph.store.memory import InMemoryStore

from stepstream.server.storage.db import create_engine, upgrade
from stepstream.server.storage.store import ItemTooLargeError, SQLStore, wiring
from tests.pgserver import create_database

pytestmark = pytest.mark.process

T = TypeVar("T")
DIMS = 64


def embed_words(texts: list[str]) -> list[list[float]]:
    """Deterministic embeddings: a bag of words hashed into DIMS counts (cosine = shared words)."""
    vectors = []
    for text in texts:
        vector = [0.0] * DIMS
        for word in text.lower().replace(",", " ").split():
            vector[int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big") % DIMS] += (
                1.0
            )
        vectors.append(vector)
    return vectors


async def aembed_words(texts: list[str]) -> list[list[float]]:
    return embed_words(texts)


class Clock:
    """Seconds since the epoch that only move when the test says."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Backend:
    kind: str  # "memory", "sqlite" or "postgres"
    url: str = ""  # ours: a migrated database (SQLite: a template copied per store)
    tmp: pathlib.Path | None = None

    @property
    def ours(self) -> bool:
        return self.kind != "memory"

    def _database(self) -> str:
        if self.kind != "sqlite":
            return self.url
        assert self.tmp is not None
        path = self.tmp / f"store-{uuid.uuid4().hex[:8]}.db"
        shutil.copy(self.url, path)
        return f"sqlite+aiosqlite:///{path}"

    @asynccontextmanager
    async def open(
        self,
        *,
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
        clock: Clock | None = None,
        max_item_bytes: int | None = None,
    ) -> AsyncIterator[BaseStore]:
        if not self.ours:
            yield InMemoryStore(index=index)
            return
        engine = create_engine(self._database())
        # A tenant of its own per store: PostgreSQL tests share one database.
        extra: dict[str, Any] = {} if max_item_bytes is None else {"max_item_bytes": max_item_bytes}
        store = SQLStore(
            engine, index=index, ttl=ttl, owner=f"t-{uuid.uuid4().hex}", clock=clock or time.time, **extra
        )
        try:
            yield store
        finally:
            await store.stop_ttl_sweeper()
            await engine.dispose()


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("store") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return str(path)


@pytest.fixture(scope="module")
def postgres_database(postgres_url: str) -> str:
    url = create_database(postgres_url)
    upgrade(url)
    return url


def _backend(kind: str, request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Backend:
    if kind == "sqlite":
        return Backend(kind, request.getfixturevalue("sqlite_template"), tmp_path)
    if kind == "postgres":
        return Backend(kind, request.getfixturevalue("postgres_database"))
    return Backend(kind)


# PostgreSQL runs as a real server process: its cases carry the `process` marker.
POSTGRES = pytest.param("postgres", marks=pytest.mark.process)


@pytest.fixture(params=["memory", "sqlite", POSTGRES])
def backend(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Backend:
    return _backend(str(request.param), request, tmp_path)


@pytest.fixture(params=["sqlite", POSTGRES])
def ours(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Backend:
    """Only our store (what InMemoryStore does not offer)."""
    return _backend(str(request.param), request, tmp_path)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[BaseStore]:
    async with backend.open() as s:
        yield s


class LoopThread:
    """An event loop on another thread, as the server's loop is to a sync node's worker thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@pytest.fixture
def sync_store(backend: Backend) -> Iterator[BaseStore]:
    """The store, for a test that calls only its sync methods (ours serves a loop on another thread)."""
    loop = LoopThread()
    opened = backend.open()
    try:
        yield loop.run(opened.__aenter__())
    finally:
        loop.run(opened.__aexit__(None, None, None))
        loop.close()


# Put, get, delete, overwrite


async def test_put_then_get_returns_the_item(store: BaseStore) -> None:
    before = datetime.now(UTC)
    await store.aput(("users", "u1"), "prefs", {"theme": "dark", "size": 3, "tags": ["a", "b"]})
    item = await store.aget(("users", "u1"), "prefs")
    assert item is not None
    assert (item.namespace, item.key) == (("users", "u1"), "prefs")
    assert item.value == {"theme": "dark", "size": 3, "tags": ["a", "b"]}
    assert item.created_at.tzinfo is not None and item.updated_at.tzinfo is not None
    assert before <= item.created_at <= item.updated_at <= datetime.now(UTC)
    assert await store.aget(("users", "u1"), "other") is None
    assert await store.aget(("users", "u2"), "prefs") is None
    assert await store.aget(("users",), "prefs") is None  # a namespace is not its prefix


async def test_overwrite_replaces_the_value_and_moves_updated_at(store: BaseStore) -> None:
    await store.aput(("docs",), "d", {"v": 1, "old": True})
    first = await store.aget(("docs",), "d")
    await asyncio.sleep(0.002)  # so the wall clock has moved between the two writes
    await store.aput(("docs",), "d", {"v": 2})
    second = await store.aget(("docs",), "d")
    assert first is not None and second is not None
    assert second.value == {"v": 2}  # replaced, not merged
    assert second.updated_at > first.updated_at
    assert second.created_at <= second.updated_at
    assert [i.key for i in await store.asearch(("docs",))] == ["d"]


async def test_delete_removes_the_item_everywhere(store: BaseStore) -> None:
    await store.aput(("a", "b"), "k", {"x": 1})
    await store.aput(("a", "c"), "k", {"x": 2})
    await store.adelete(("a", "b"), "k")
    assert await store.aget(("a", "b"), "k") is None
    assert [i.namespace for i in await store.asearch(("a",))] == [("a", "c")]
    await store.adelete(("a", "b"), "k")  # deleting what is not there is not an error
    await store.adelete(("nowhere",), "k")
    assert (await store.aget(("a", "c"), "k")) is not None


async def test_put_of_none_in_a_batch_deletes(store: BaseStore) -> None:
    await store.aput(("a",), "k", {"x": 1})
    assert await store.abatch([PutOp(("a",), "k", None)]) == [None]
    assert await store.aget(("a",), "k") is None


async def test_batch_results_follow_the_ops_and_the_last_put_wins(store: BaseStore) -> None:
    await store.aput(("n",), "there", {"v": 0})
    results = await store.abatch(
        [
            GetOp(("n",), "there"),
            PutOp(("n",), "new", {"v": 1}),
            GetOp(("n",), "missing"),
            ListNamespacesOp(),
            SearchOp(("n",)),
            PutOp(("n",), "new", {"v": 2}),
        ]
    )
    assert len(results) == 6
    got, put, missing, listed, found, put2 = results
    assert got is not None and not isinstance(got, list) and got.value == {"v": 0}
    assert put is None and missing is None and put2 is None
    assert listed == [("n",)]
    assert isinstance(found, list) and ("there" in [i.key for i in found])  # type: ignore[union-attr]
    item = await store.aget(("n",), "new")
    assert item is not None and item.value == {"v": 2}


async def test_concurrent_writers_all_land(store: BaseStore) -> None:
    await asyncio.gather(*(store.aput(("c", str(i % 4)), f"k{i}", {"i": i}) for i in range(40)))
    found = await store.asearch(("c",), limit=100)
    assert sorted(i.value["i"] for i in found) == list(range(40))


async def test_concurrent_batches_share_transactions(ours: Backend) -> None:
    async with ours.open() as store:
        assert isinstance(store, SQLStore)
        await asyncio.gather(*(store.aput(("g",), f"k{i}", {"i": i}) for i in range(30)))
        assert len(await store.asearch(("g",), limit=50)) == 30
        # All 30 were pending at once: they went to the database in fewer transactions than calls.
        assert store._shared.runner.transactions < 30


def test_sync_methods(sync_store: BaseStore) -> None:
    s = sync_store
    s.put(("sync", "a"), "k1", {"n": 1})
    s.put(("sync", "b"), "k2", {"n": 2})
    item = s.get(("sync", "a"), "k1")
    assert item is not None and item.value == {"n": 1}
    assert sorted(i.key for i in s.search(("sync",), filter={"n": {"$gte": 1}})) == ["k1", "k2"]
    assert s.list_namespaces(prefix=("sync",)) == [("sync", "a"), ("sync", "b")]
    s.delete(("sync", "a"), "k1")
    assert s.get(("sync", "a"), "k1") is None
    assert s.batch([GetOp(("sync", "b"), "k2")])[0] is not None


# Namespaces


@pytest.mark.parametrize(
    "namespace",
    [(), ("a.b",), ("a", ""), ("ok", 7), ("langgraph", "x")],
    ids=["empty", "period", "empty-label", "not-a-string", "reserved-root"],
)
async def test_bad_namespace_is_refused_and_nothing_stored(store: BaseStore, namespace: Any) -> None:
    with pytest.raises(InvalidNamespaceError):
        await store.aput(namespace, "k", {"x": 1})
    with pytest.raises(InvalidNamespaceError):
        store.put(namespace, "k", {"x": 1})  # checked before anything runs, sync or not
    assert await store.asearch(()) == []


async def test_bad_labels_are_refused_by_reads(store: BaseStore) -> None:
    for call in (
        store.aget(("a.b",), "k"),
        store.asearch(("a", "")),
        store.alist_namespaces(prefix=("x.y",)),
        store.adelete(("a.b",), "k"),
    ):
        with pytest.raises(InvalidNamespaceError):
            await call


async def test_search_prefix_is_by_whole_labels(store: BaseStore) -> None:
    for namespace in [("docs", "a"), ("docs", "ab"), ("docs", "a", "deep"), ("docsx",), ("other",)]:
        await store.aput(namespace, "k", {"ns": list(namespace)})

    async def found(prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
        return sorted(i.namespace for i in await store.asearch(prefix, limit=50))

    assert await found(("docs",)) == [("docs", "a"), ("docs", "a", "deep"), ("docs", "ab")]
    assert await found(("docs", "a")) == [("docs", "a"), ("docs", "a", "deep")]
    assert await found(("doc",)) == []
    assert len(await found(())) == 5


async def test_list_namespaces_prefix_suffix_wildcards_depth_paging(store: BaseStore) -> None:
    spaces = [
        ("a", "b", "c"),
        ("a", "b", "d", "e"),
        ("a", "b", "d", "i"),
        ("a", "b", "f"),
        ("a", "c", "f"),
        ("b", "a", "f"),
        ("users", "123"),
        ("users", "456", "settings"),
        ("admin", "users", "789"),
    ]
    for i, namespace in enumerate(spaces):
        await store.aput(namespace, f"k{i}", {"i": i})

    assert await store.alist_namespaces() == sorted(spaces)
    assert await store.alist_namespaces(prefix=("a", "b")) == [
        ("a", "b", "c"),
        ("a", "b", "d", "e"),
        ("a", "b", "d", "i"),
        ("a", "b", "f"),
    ]
    assert await store.alist_namespaces(suffix=("f",)) == [("a", "b", "f"), ("a", "c", "f"), ("b", "a", "f")]
    assert await store.alist_namespaces(prefix=("a",), suffix=("f",)) == [("a", "b", "f"), ("a", "c", "f")]
    assert await store.alist_namespaces(prefix=("a", "*", "f")) == [("a", "b", "f"), ("a", "c", "f")]
    assert await store.alist_namespaces(suffix=("*", "f")) == [
        ("a", "b", "f"),
        ("a", "c", "f"),
        ("b", "a", "f"),
    ]
    assert await store.alist_namespaces(prefix=("*", "users")) == [("admin", "users", "789")]
    assert await store.alist_namespaces(prefix=("a",), max_depth=2) == [("a", "b"), ("a", "c")]
    assert await store.alist_namespaces(max_depth=1) == [("a",), ("admin",), ("b",), ("users",)]
    assert await store.alist_namespaces(prefix=("a", "b"), max_depth=3) == [
        ("a", "b", "c"),
        ("a", "b", "d"),
        ("a", "b", "f"),
    ]
    everything = sorted(spaces)
    pages = [await store.alist_namespaces(limit=4, offset=o) for o in (0, 4, 8)]
    assert pages == [everything[0:4], everything[4:8], everything[8:]]
    assert await store.alist_namespaces(offset=len(spaces)) == []
    assert await store.alist_namespaces(prefix=("nope",)) == []


# Search: filters and paging


async def _catalogue(store: BaseStore) -> None:
    rows = [
        ("p1", {"color": "red", "score": 4.5, "n": 1, "meta": {"kind": "x", "rank": 1}, "tags": ["a", "b"]}),
        ("p2", {"color": "blue", "score": 3.0, "n": 2, "meta": {"kind": "y", "rank": 2}, "tags": ["a"]}),
        ("p3", {"color": "red", "score": 2.0, "n": 3, "meta": {"kind": "x", "rank": 3}, "tags": []}),
        ("p4", {"color": "green", "score": 5.0, "n": 4, "meta": {"kind": "z", "rank": 4}, "tags": ["b"]}),
    ]
    for key, value in rows:
        await store.aput(("shop", "items"), key, value)


@pytest.mark.parametrize(
    ("filter", "expected"),
    [
        ({"color": "red"}, ["p1", "p3"]),
        ({"color": {"$eq": "blue"}}, ["p2"]),
        ({"color": {"$ne": "red"}}, ["p2", "p4"]),
        ({"score": {"$gt": 3.0}}, ["p1", "p4"]),
        ({"score": {"$gte": 3.0}}, ["p1", "p2", "p4"]),
        ({"score": {"$lt": 3.0}}, ["p3"]),
        ({"score": {"$lte": 3.0}}, ["p2", "p3"]),
        ({"n": {"$gt": 1, "$lt": 4}}, ["p2", "p3"]),
        ({"color": "red", "score": {"$gte": 4}}, ["p1"]),
        ({"meta": {"kind": "x"}}, ["p1", "p3"]),
        ({"tags": ["a", "b"]}, ["p1"]),
        ({"color": "purple"}, []),
    ],
)
async def test_search_filters(store: BaseStore, filter: dict[str, Any], expected: list[str]) -> None:
    await _catalogue(store)
    found = await store.asearch(("shop",), filter=filter)
    assert sorted(i.key for i in found) == expected
    assert all(i.score is None for i in found)


async def test_unknown_filter_operator_is_a_value_error(store: BaseStore) -> None:
    await _catalogue(store)
    with pytest.raises(ValueError, match=r"\$regex"):
        await store.asearch(("shop",), filter={"color": {"$regex": "r.*"}})


@pytest.mark.parametrize("filtered", [False, True])
async def test_search_pages_partition_the_results(store: BaseStore, filtered: bool) -> None:
    for i in range(7):
        await store.aput(("page", str(i % 2)), f"k{i}", {"i": i, "even": i % 2 == 0, "all": True})
    filter = {"all": True} if filtered else None
    everything = await store.asearch(("page",), filter=filter, limit=100)
    assert len(everything) == 7
    pages = [await store.asearch(("page",), filter=filter, limit=3, offset=o) for o in (0, 3, 6, 9)]
    assert [len(p) for p in pages] == [3, 3, 1, 0]
    paged = [(i.namespace, i.key) for p in pages for i in p]
    assert paged == [(i.namespace, i.key) for i in everything]
    assert len(await store.asearch(("page",), filter=filter, limit=2)) == 2
    assert sorted(i.value["i"] for i in await store.asearch(("page",), filter={"even": True})) == [0, 2, 4, 6]


async def test_sparse_filter_pages_reach_past_the_first_rows(store: BaseStore) -> None:
    await asyncio.gather(*(store.aput(("sparse",), f"k{i}", {"i": i, "hit": i % 10 == 0}) for i in range(60)))
    pages = [await store.asearch(("sparse",), filter={"hit": True}, limit=3, offset=o) for o in (0, 3, 6)]
    assert [len(p) for p in pages] == [3, 3, 0]
    assert sorted(i.value["i"] for p in pages for i in p) == [0, 10, 20, 30, 40, 50]


async def test_search_returns_items_with_their_times(store: BaseStore) -> None:
    await store.aput(("t",), "k", {"x": 1})
    got = await store.aget(("t",), "k")
    found = await store.asearch(("t",))
    assert got is not None and len(found) == 1
    assert (found[0].created_at, found[0].updated_at, found[0].value) == (
        got.created_at,
        got.updated_at,
        got.value,
    )


async def test_query_without_an_index_still_lists(store: BaseStore) -> None:
    await store.aput(("q",), "k", {"text": "hello"})
    found = await store.asearch(("q",), query="hello")
    assert [(i.key, i.score) for i in found] == [("k", None)]


# Semantic search

DOCS = {
    "fruit": "red apples and green pears from the orchard",
    "code": "python code with type hints runs fast",
    "space": "rockets fly to the moon and to mars",
    "garden": "the orchard has apple trees and a garden",
}


@pytest.mark.parametrize("embed", [embed_words, aembed_words], ids=["sync-embed", "async-embed"])
async def test_semantic_search_ranks_nearest_first(backend: Backend, embed: Any) -> None:
    async with backend.open(index={"dims": DIMS, "embed": embed, "fields": ["text"]}) as store:
        for key, text in DOCS.items():
            await store.aput(("docs",), key, {"text": text, "topic": key})
        found = await store.asearch(("docs",), query=DOCS["space"])
        assert found[0].key == "space" and found[0].score == pytest.approx(1.0)
        scores = [i.score for i in found]
        assert all(s is not None for s in scores) and scores == sorted(scores, reverse=True)  # type: ignore[type-var]
        ranked = [i.key for i in await store.asearch(("docs",), query="apples orchard")]
        assert ranked[:2] == ["fruit", "garden"] and set(ranked) == set(DOCS)
        top = await store.asearch(("docs",), query="apples orchard", limit=1, offset=1)
        assert [i.key for i in top] == ["garden"]
        filtered = await store.asearch(("docs",), query="apples orchard", filter={"topic": {"$ne": "fruit"}})
        assert filtered[0].key == "garden"


async def test_semantic_search_index_choice_per_put(backend: Backend) -> None:
    async with backend.open(index={"dims": DIMS, "embed": embed_words, "fields": ["text"]}) as store:
        await store.aput(("m",), "by-text", {"text": "moon rockets", "note": "cooking pasta"})
        await store.aput(("m",), "by-note", {"text": "cooking pasta", "note": "moon rockets"}, index=["note"])
        await store.aput(("m",), "hidden", {"text": "moon rockets"}, index=False)
        found = await store.asearch(("m",), query="moon rockets")
        assert {i.key for i in found[:2]} == {"by-text", "by-note"}
        assert all(i.score == pytest.approx(1.0) for i in found[:2])
        assert [(i.key, i.score) for i in found[2:]] == [("hidden", None)]  # kept, unranked, after
        await store.aput(("m",), "by-text", {"text": "cooking pasta"})  # re-embedded on overwrite
        again = await store.asearch(("m",), query="moon rockets", limit=1)
        assert [i.key for i in again] == ["by-note"]


async def test_semantic_search_over_list_fields(backend: Backend) -> None:
    index: IndexConfig = {"dims": DIMS, "embed": embed_words, "fields": ["chunks[*]"]}
    async with backend.open(index=index) as store:
        await store.aput(("c",), "a", {"chunks": ["pasta recipe", "moon landing history"]})
        await store.aput(("c",), "b", {"chunks": ["garden tools", "apple trees"]})
        found = await store.asearch(("c",), query="moon landing history")
        assert found[0].key == "a" and found[0].score == pytest.approx(1.0)  # its best chunk counts


# What only our store offers: TTLs, tenants, the size cap


async def test_ttl_is_supported_or_refused(backend: Backend) -> None:
    async with backend.open() as store:
        if not store.supports_ttl:
            with pytest.raises(NotImplementedError):
                await store.aput(("t",), "k", {"x": 1}, ttl=5)
            assert await store.aget(("t",), "k") is None
            return
        await store.aput(("t",), "k", {"x": 1}, ttl=5)
        assert await store.aget(("t",), "k") is not None
        assert isinstance(store, SQLStore)  # InMemoryStore has no TTLs; the rest of them is ours


async def test_ttl_expiry_and_refresh_on_read(ours: Backend) -> None:
    clock = Clock()
    async with ours.open(clock=clock, ttl={"refresh_on_read": True}) as store:
        assert isinstance(store, SQLStore)
        await store.aput(("t",), "read", {"x": 1}, ttl=1)  # one minute
        await store.aput(("t",), "peeked", {"x": 2}, ttl=1)
        await store.aput(("t",), "searched", {"x": 3}, ttl=1)
        await store.aput(("t",), "forever", {"x": 4})
        clock.advance(40)
        assert await store.aget(("t",), "read") is not None  # refreshes: now lives until 100 s
        assert await store.aget(("t",), "peeked", refresh_ttl=False) is not None
        assert [i.key for i in await store.asearch(("t",), filter={"x": 3})] == ["searched"]
        clock.advance(40)  # 80 s: "peeked" expired at 60 s
        assert await store.asweep_ttl() == 1
        assert await store.aget(("t",), "peeked") is None
        remaining = {i.key for i in await store.asearch(("t",), refresh_ttl=False)}
        assert remaining == {"read", "searched", "forever"}
        clock.advance(30)  # 110 s: the refreshed ones expired at 100 s
        assert await store.asweep_ttl() == 2
        assert {i.key for i in await store.asearch(("t",))} == {"forever"}
        assert await store.alist_namespaces() == [("t",)]


async def test_ttl_defaults_and_config(ours: Backend) -> None:
    clock = Clock()
    ttl: TTLConfig = {"default_ttl": 1, "refresh_on_read": False}
    async with ours.open(clock=clock, ttl=ttl) as store:
        await store.aput(("d",), "default", {"x": 1})
        await store.aput(("d",), "never", {"x": 2}, ttl=None)
        await store.aput(("d",), "asked", {"x": 3})
        clock.advance(50)
        await store.aget(("d",), "default")  # refresh_on_read is off: no refresh
        await store.aget(("d",), "asked", refresh_ttl=True)  # ...unless asked
        await store.aput(("d",), "never", {"x": 20}, ttl=None)
        clock.advance(20)
        assert await store.asweep_ttl() == 1
        assert {i.key for i in await store.asearch(("d",))} == {"never", "asked"}
        clock.advance(60)
        await store.asweep_ttl()
        assert {i.key for i in await store.asearch(("d",))} == {"never"}


async def test_expired_items_can_be_omitted_before_the_sweep(ours: Backend) -> None:
    clock = Clock()
    async with ours.open(clock=clock, ttl={"omit_expired": True}) as store:
        await store.aput(("o", "x"), "gone", {"x": 1}, ttl=1)
        await store.aput(("o", "y"), "kept", {"x": 2})
        clock.advance(61)
        assert await store.aget(("o", "x"), "gone") is None
        assert [i.key for i in await store.asearch(("o",))] == ["kept"]
        assert await store.alist_namespaces() == [("o", "y")]


async def test_background_sweeper_deletes_expired_items(ours: Backend) -> None:
    clock = Clock()
    async with ours.open(clock=clock, ttl={"sweep_interval_minutes": 1}) as store:
        assert isinstance(store, SQLStore)
        assert store.sweep_interval_seconds() == 60.0
        await store.aput(("s",), "k", {"x": 1}, ttl=1)
        await store.aput(("s",), "stays", {"x": 2})
        clock.advance(120)
        store.start_ttl_sweeper(interval_seconds=0.01)
        store.start_ttl_sweeper(interval_seconds=0.01)  # idempotent
        for _ in itertools.count():  # until a sweep has run (the test's timeout bounds it)
            if store._shared.sweeps:
                break
            await asyncio.sleep(0.01)
        await store.stop_ttl_sweeper()
        assert [i.key for i in await store.asearch(("s",))] == ["stays"]
        assert store._shared.sweeper is None


async def test_tenants_never_see_each_other(ours: Backend) -> None:
    index: IndexConfig = {"dims": DIMS, "embed": embed_words, "fields": ["text"]}
    async with ours.open(index=index) as base:
        assert isinstance(base, SQLStore)
        alice, bob = base.scoped("alice-" + uuid.uuid4().hex), base.scoped("bob-" + uuid.uuid4().hex)
        await alice.aput(("memories",), "k", {"text": "alice likes the moon"})
        await bob.aput(("memories",), "k", {"text": "bob likes pasta"})
        await alice.aput(("private", "a"), "only", {"text": "secret moon base"})
        alice_item, bob_item = await alice.aget(("memories",), "k"), await bob.aget(("memories",), "k")
        assert alice_item is not None and alice_item.value == {"text": "alice likes the moon"}
        assert bob_item is not None and bob_item.value == {"text": "bob likes pasta"}
        assert await bob.aget(("private", "a"), "only") is None
        assert [i.value["text"] for i in await bob.asearch((), query="moon")] == ["bob likes pasta"]
        assert await bob.alist_namespaces() == [("memories",)]
        await bob.adelete(("private", "a"), "only")  # bob cannot delete alice's item
        assert await alice.aget(("private", "a"), "only") is not None
        assert await alice.alist_namespaces() == [("memories",), ("private", "a")]
        for bad in ("", "x" * 129):
            with pytest.raises(ValueError, match="tenant"):
                base.scoped(bad)


async def test_oversized_or_non_json_item_is_refused_and_nothing_stored(ours: Backend) -> None:
    async with ours.open(max_item_bytes=1000) as store:
        with pytest.raises(ItemTooLargeError, match="1000 bytes"):
            await store.abatch([PutOp(("big",), "ok", {"x": 1}), PutOp(("big",), "huge", {"x": "y" * 2000})])
        assert isinstance(ItemTooLargeError("x"), ValueError)
        with pytest.raises(ValueError, match="not JSON"):
            await store.aput(("big",), "obj", {"x": object()})
        assert await store.asearch(()) == []  # the valid put of the failed batch did not land either
        await store.aput(("big",), "fits", {"x": "y" * 900})
        assert await store.aget(("big",), "fits") is not None


async def test_ops_given_to_batch_directly_are_checked(ours: Backend) -> None:
    async with ours.open() as store:
        for op in (
            PutOp(("a.b",), "k", {"x": 1}),
            PutOp((), "k", {"x": 1}),
            GetOp(("",), "k"),
            SearchOp(("x", "y.z")),
            ListNamespacesOp(match_conditions=(MatchCondition("prefix", ("a.b",)),)),
        ):
            with pytest.raises(InvalidNamespaceError):
                await store.abatch([op])
        with pytest.raises(ValueError, match="limit"):
            await store.abatch([SearchOp(("a",), limit=-1)])
        with pytest.raises(ValueError, match="NUL"):
            await store.aput(("a",), "nul\x00key", {"x": 1})
        with pytest.raises(ValueError, match="ttl"):
            await store.aput(("a",), "k", {"x": 1}, ttl=-5)
        assert await store.alist_namespaces() == []


async def test_overwrite_keeps_created_at(ours: Backend) -> None:
    # Not asserted of InMemoryStore, which gives an overwritten item a new created_at.
    clock = Clock()
    async with ours.open(clock=clock) as store:
        await store.aput(("c",), "k", {"v": 1})
        clock.advance(5)
        await store.aput(("c",), "k", {"v": 2})
        item = await store.aget(("c",), "k")
        assert item is not None
        assert (item.updated_at - item.created_at).total_seconds() == pytest.approx(5)


async def test_sync_methods_refuse_to_block_the_loop_they_serve(ours: Backend) -> None:
    async with ours.open() as store:
        await store.aput(("l",), "k", {"x": 1})
        with pytest.raises(asyncio.InvalidStateError, match="another thread"):
            store.get(("l",), "k")
        item = await asyncio.to_thread(store.get, ("l",), "k")  # from a worker thread it works
        assert item is not None and item.value == {"x": 1}


async def test_embed_named_by_a_string(ours: Backend, tmp_path: pathlib.Path) -> None:
    module = tmp_path / "my_embeddings.py"
    module.write_text("from bench.store import embed\ndef embed_texts(texts):\n    return embed(texts)\n")
    for spec in (f"{module}:embed_texts", "bench.store:embed"):
        async with ours.open(index={"dims": 64, "embed": spec, "fields": ["text"]}) as store:
            await store.aput(("e",), "moon", {"text": "moon rocket"})
            await store.aput(("e",), "pasta", {"text": "pasta sauce"})
            assert [i.key for i in await store.asearch(("e",), query="moon rocket")] == ["moon", "pasta"]
    with pytest.raises(ValueError, match="never downloaded"):
        async with ours.open(index={"dims": 8, "embed": f"local:{tmp_path / 'no-model'}"}):
            pass
    with pytest.raises(ValueError, match="no attribute"):
        async with ours.open(index={"dims": 8, "embed": "bench.store:missing"}):
            pass
    with pytest.raises(ValueError, match="dims"):
        async with ours.open(index={"dims": 0, "embed": embed_words}):
            pass


async def test_wrong_embedding_size_is_refused_and_nothing_stored(ours: Backend) -> None:
    async with ours.open(index={"dims": DIMS + 1, "embed": embed_words, "fields": ["text"]}) as store:
        with pytest.raises(ValueError, match="dimensions"):
            await store.aput(("w",), "k", {"text": "moon"})
        assert await store.aget(("w",), "k") is None


async def test_server_wiring_starts_and_stops_the_sweeper(ours: Backend) -> None:
    engine = create_engine(ours._database())
    try:
        store = await wiring.open_store(engine, {"ttl": {"default_ttl": 10, "sweep_interval_minutes": 2}})
        assert store.sweep_interval_seconds() == 120.0
        sweeper = store._shared.sweeper
        assert sweeper is not None and not sweeper.done()
        await store.aput(("w",), "k", {"x": 1})
        assert await store.aget(("w",), "k") is not None
        await wiring.close_store(store)
        assert sweeper.done() and store._shared.sweeper is None
        assert (await wiring.open_store(engine, None))._shared.sweeper is None  # no TTLs, no sweeper
        with pytest.raises(ValueError, match="unknown key 'indexes'"):
            wiring.store_from_config(engine, {"indexes": {}})
    finally:
        await engine.dispose()
