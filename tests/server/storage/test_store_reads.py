"""The store's reads, each one function through the Reader: on SQLite's reader threads and on the
async engine (the path other back ends take), with the same answers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import pytest

from stepstream.server.core import records as rec
from stepstream.server.core.errors import NotFound
from stepstream.server.core.events import RunEvent
from stepstream.server.storage import claims
from stepstream.server.storage.batch import GroupCommitWriter
from stepstream.server.storage.checkpointer import SQLAlchemyCheckpointSaver
from stepstream.server.storage.reads import Reader
from stepstream.server.storage.records import Store, writes_for_events

pytestmark = pytest.mark.process

SaverFactory = Callable[[], AbstractAsyncContextManager[SQLAlchemyCheckpointSaver]]


@pytest.fixture(params=["reader-threads", "async-engine"])
async def store(request: pytest.FixtureRequest, make_saver: SaverFactory) -> AsyncIterator[Store]:
    async with make_saver() as saver:
        reader = Reader(saver.engine, threads=4 if request.param == "reader-threads" else 0)
        store = Store(saver.engine, reader)
        await fill(store, saver.writer)
        try:
            yield store
        finally:
            await reader.close()


def session(
    i: int, owner: str = "alice", graph_id: str = "g", status: str = rec.SessionStatus.IDLE
) -> rec.Session:
    return rec.Session(f"s{i}", owner, graph_id, status, {"i": i}, created_at=float(i), updated_at=float(i))


def run(i: int, session_id: str, status: str) -> rec.Run:
    return rec.Run(f"r{i}", "alice", session_id, "g", status, rec.RunOptions(), created_at=float(i))


async def fill(store: Store, writer: GroupCommitWriter) -> None:
    writes = [store.insert_session(session(i)) for i in range(5)]
    writes += [store.insert_session(session(5, owner="bob")), store.insert_session(session(6, graph_id="h"))]
    writes.append(store.insert_session(session(7, status=rec.SessionStatus.BUSY)))
    statuses = [rec.RunStatus.QUEUED, rec.RunStatus.RUNNING, rec.RunStatus.SUCCEEDED, rec.RunStatus.FAILED]
    writes += [store.insert_run(run(i, "s0", status), None, None) for i, status in enumerate(statuses)]
    events = [RunEvent("r0", seq, 10.0 + seq, "custom", (), {"n": seq}) for seq in range(1, 8)]
    await writer.write(writes + writes_for_events("s0", events))


async def test_gets_are_scoped_to_the_owner(store: Store) -> None:
    got = await store.get_session("alice", "s3")
    assert (got.session_id, got.metadata, got.created_at) == ("s3", {"i": 3}, 3.0)
    assert (await store.get_run("alice", "r2")).status == rec.RunStatus.SUCCEEDED
    with pytest.raises(NotFound):
        await store.get_session("alice", "s5")
    with pytest.raises(NotFound):
        await store.get_run("bob", "r2")
    with pytest.raises(NotFound):
        await store.get_session("alice", "missing")


async def test_lists_page_newest_first(store: Store) -> None:
    seen: list[str] = []
    token = ""
    while True:
        items, token = await store.list_sessions("alice", "g", 2, token)
        seen += [s.session_id for s in items]
        if not token:
            break
    assert seen == ["s7", "s4", "s3", "s2", "s1", "s0"]
    only_h, more = await store.list_sessions("alice", "h", 10, "")
    assert ([s.session_id for s in only_h], more) == (["s6"], "")

    first, token = await store.list_runs("alice", "s0", (), 3, "")
    rest, end = await store.list_runs("alice", "s0", (), 3, token)
    assert [r.run_id for r in first + rest] == ["r3", "r2", "r1", "r0"] and end == ""
    active, _ = await store.list_runs("alice", "", rec.ACTIVE, 10, "")
    assert [r.run_id for r in active] == ["r1", "r0"]
    active_in_s0 = await store.reader.run(lambda conn: claims.session_active_runs(conn, "s0"))
    assert [(run_id, status) for run_id, status, _ in active_in_s0] == [
        ("r0", rec.RunStatus.QUEUED),
        ("r1", rec.RunStatus.RUNNING),
    ]


async def test_run_state_events_and_retention_reads(store: Store) -> None:
    assert not await store.run_is_over("r0")
    assert await store.run_is_over("r2")
    assert await store.run_is_over("missing")

    assert [seq for seq, _, _ in await store.events_after("r0", 0)] == list(range(1, 8))
    page = await store.events_after("r0", 2, limit=3)
    assert [(seq, kind) for seq, kind, _ in page] == [(3, "custom"), (4, "custom"), (5, "custom")]
    assert RunEvent.from_row("r0", *page[0]).data == {"n": 3}
    assert await store.events_after("r0", 7) == []

    assert sorted(await store.expired_sessions(older_than=3.5)) == ["s0", "s1", "s2", "s3"]
    assert len(await store.expired_sessions(older_than=100.0, limit=2)) == 2
    assert sorted(await store.sessions_updated_since(6.0)) == ["s6", "s7"]
