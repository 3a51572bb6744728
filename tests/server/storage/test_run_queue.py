"""The run queue's SQL (storage/claims.py) on SQLite and PostgreSQL: claims take the head of each
free session only, leases renew and lapse, and a queued run is cancelled by exactly one writer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import pytest

from stepstream.server.core import records as rec
from stepstream.server.core.events import RunEvent
from stepstream.server.storage import claims
from stepstream.server.storage.batch import GroupCommitWriter
from stepstream.server.storage.checkpointer import SQLAlchemyCheckpointSaver
from stepstream.server.storage.records import Store, writes_for_events

pytestmark = pytest.mark.process

SaverFactory = Callable[[], AbstractAsyncContextManager[SQLAlchemyCheckpointSaver]]
LEASE = 3.0


@pytest.fixture
async def queue(make_saver: SaverFactory) -> AsyncIterator[tuple[Store, GroupCommitWriter]]:
    async with make_saver() as saver:
        store = Store(saver.engine)
        try:
            yield store, saver.writer
        finally:
            await store.aclose()


def _run(
    run_id: str, session_id: str, created_at: float, status: str = rec.RunStatus.QUEUED, graph: str = "g"
) -> rec.Run:
    return rec.Run(run_id, "alice", session_id, graph, status, rec.RunOptions(), created_at=created_at)


Rows = list[tuple[rec.Run, str | None, float | None]]
Queue = tuple[Store, GroupCommitWriter]


async def _fill(store: Store, writer: GroupCommitWriter, runs: Rows) -> None:
    sessions = {(r.session_id, r.graph_id) for r, _, _ in runs}
    writes = [
        store.insert_session(rec.Session(s, "alice", g, rec.SessionStatus.BUSY, {}, 0.0, 0.0))
        for s, g in sessions
    ]
    writes += [store.insert_run(run, replica, lease) for run, replica, lease in runs]
    await writer.write(writes)


async def test_claims_take_the_oldest_queued_run_of_each_free_session(
    queue: Queue,
) -> None:
    store, writer = queue
    await _fill(
        store,
        writer,
        [
            (_run("a1", "sa", 1.0), None, None),
            (_run("a2", "sa", 2.0), None, None),
            (_run("b1", "sb", 3.0, rec.RunStatus.RUNNING), "other", 1e12),
            (_run("b2", "sb", 4.0), None, None),
            (_run("c1", "sc", 5.0), None, None),
            (_run("x1", "sx", 0.5, graph="h"), None, None),
        ],
    )
    # Graph h is not served by this replica: x1 stays for a replica that has it.
    claimed = await writer.transact(lambda c: claims.claim(c, "me", 100.0, LEASE, ["g"], 10))
    assert sorted(run.run_id for run, _ in claimed) == ["a1", "c1"]
    assert all(run.status == rec.RunStatus.RUNNING and run.attempt == 1 for run, _ in claimed)
    # Each session runs one thing at a time: nothing more is claimable until a1 ends.
    assert await writer.transact(lambda c: claims.claim(c, "me", 100.0, LEASE, ["g"], 10)) == []
    only_sa = await writer.transact(lambda c: claims.claim(c, "me", 100.0, LEASE, ["g"], 10, "sa"))
    assert only_sa == []


async def test_a_lapsed_lease_is_taken_back_but_never_ones_own(
    queue: Queue,
) -> None:
    store, writer = queue
    events = [RunEvent("dead1", seq, 1.0, "custom", (), {}) for seq in (1, 2, 3)]
    await _fill(
        store,
        writer,
        [
            (_run("dead1", "s1", 1.0, rec.RunStatus.RUNNING), "gone", 50.0),
            (_run("mine", "s2", 2.0, rec.RunStatus.RUNNING), "me", 50.0),
            (_run("alive", "s3", 3.0, rec.RunStatus.RUNNING), "other", 500.0),
        ],
    )
    await writer.write(writes_for_events("s1", events))
    assert await writer.transact(lambda c: claims.requeue_expired(c, "me", 100.0)) == ["dead1"]
    claimed = await writer.transact(lambda c: claims.claim(c, "me", 100.0, LEASE, ["g"], 10))
    # The run keeps its id and continues its event stream after the last stored seq.
    assert [(run.run_id, last, run.attempt) for run, last in claimed] == [("dead1", 3, 1)]
    renewed = await writer.transact(lambda c: claims.renew(c, "me", 200.0))
    assert renewed == {"dead1": None, "mine": None}


async def test_cancel_requests_reach_the_holder_through_renewal(
    queue: Queue,
) -> None:
    store, writer = queue
    await _fill(store, writer, [(_run("r1", "s1", 1.0, rec.RunStatus.RUNNING), "holder", 500.0)])
    assert not await writer.transact(lambda c: claims.request_cancel(c, "mallory", "r1", "{}"))
    assert await writer.transact(lambda c: claims.request_cancel(c, "alice", "r1", '{"reason": "x"}'))
    renewed = await writer.transact(lambda c: claims.renew(c, "holder", 600.0))
    assert renewed == {"r1": '{"reason": "x"}'}


async def test_a_queued_run_is_cancelled_once_with_its_closing_event(
    queue: Queue,
) -> None:
    store, writer = queue
    await _fill(store, writer, [(_run("q1", "s1", 1.0), None, None)])

    def closing(last: int) -> list[RunEvent]:
        return [RunEvent("q1", last + 1, 2.0, "run_cancelled", (), {"reason": "r", "rolled_back": False})]

    first = await writer.transact(lambda c: claims.cancel_queued(c, "alice", "q1", 2.0, closing))
    again = await writer.transact(lambda c: claims.cancel_queued(c, "alice", "q1", 2.0, closing))
    assert first is not None and first.status == rec.RunStatus.CANCELLED and first.last_seq == 1
    assert again is None
    assert [seq for seq, _, _ in await store.events_after("q1", 0)] == [1]
    assert (await store.get_session("alice", "s1")).status == rec.SessionStatus.IDLE


async def test_an_earlier_process_of_the_same_name_gives_its_runs_back(
    queue: Queue,
) -> None:
    store, writer = queue
    await _fill(store, writer, [(_run("r1", "s1", 1.0, rec.RunStatus.RUNNING), "me", 1e12)])
    assert await writer.transact(lambda c: claims.release_replica(c, "me")) == 1
    assert (await store.get_run("alice", "r1")).status == rec.RunStatus.QUEUED
