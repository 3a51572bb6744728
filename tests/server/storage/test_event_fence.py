"""A run's events are fenced by its holder (storage/records.py), on SQLite and PostgreSQL: the
event insert of a writer that lost the run (another replica, or an earlier attempt of the same
replica) lands nothing and fails nothing, while the live holder's events in the same group
commit all land; an earlier attempt neither ends nor hands back the run. On PostgreSQL, a run
whose old holder is still inserting cannot be claimed until that transaction ends, so the
claim's last seq counts those events."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import pytest
import sqlalchemy as sa

from stepstream.server.core import records as rec
from stepstream.server.core.events import RunEvent
from stepstream.server.storage import claims
from stepstream.server.storage.batch import GroupCommitWriter
from stepstream.server.storage.checkpointer import SQLAlchemyCheckpointSaver
from stepstream.server.storage.records import Store
from stepstream.server.storage.schema import run_events

pytestmark = pytest.mark.process

SaverFactory = Callable[[], AbstractAsyncContextManager[SQLAlchemyCheckpointSaver]]
Queue = tuple[Store, GroupCommitWriter]


@pytest.fixture
async def queue(make_saver: SaverFactory) -> AsyncIterator[Queue]:
    async with make_saver() as saver:
        store = Store(saver.engine)
        try:
            yield store, saver.writer
        finally:
            await store.aclose()


async def _running(store: Store, writer: GroupCommitWriter, *held: tuple[str, str, int]) -> None:
    """Runs (id, replica, attempt) executing, one session each."""
    writes = []
    for run_id, replica, attempt in held:
        session = rec.Session(f"s-{run_id}", "alice", "g", rec.SessionStatus.BUSY, {}, 0.0, 0.0)
        run = rec.Run(
            run_id,
            "alice",
            session.session_id,
            "g",
            rec.RunStatus.RUNNING,
            rec.RunOptions(),
            0.0,
            attempt=attempt,
        )
        writes += [store.insert_session(session), store.insert_run(run, replica, 1e12)]
    await writer.write(writes)


def _event(run_id: str, seq: int, writer: str) -> RunEvent:
    return RunEvent(run_id, seq, float(seq), "custom", (), {"by": writer})


async def _stored(store: Store, run_id: str) -> list[tuple[int, str]]:
    return [
        (seq, RunEvent.from_row(run_id, seq, kind, body).data["by"])
        for seq, kind, body in await store.events_after(run_id, 0)
    ]


async def test_a_stale_writers_events_are_dropped_without_failing_the_live_holders_batch(
    queue: Queue,
) -> None:
    store, writer = queue
    # r1 came back to replica "a" (attempt 2); r2 is now "b"'s; r3 is "a"'s and handed back.
    await _running(store, writer, ("r1", "a", 2), ("r2", "b", 1), ("r3", "a", 1))
    hand_back = writer.submit([store.run_handed_back("r3", "a", 1)])
    # One group commit: the live holders' events, and the stale ones taking the same seqs.
    submissions = [
        writer.submit(store.event_writes("s-r1", [_event("r1", 1, "a#1-stale")], ("a", 1))),
        writer.submit(store.event_writes("s-r1", [_event("r1", 1, "a#2"), _event("r1", 2, "a#2")], ("a", 2))),
        writer.submit(store.event_writes("s-r2", [_event("r2", 1, "a-stale")], ("a", 1))),
        writer.submit(store.event_writes("s-r2", [_event("r2", 1, "b")], ("b", 1))),
        # Reported before its hand-back, queued after another's in the same commit: it lands.
        writer.submit(store.event_writes("s-r3", [_event("r3", 1, "a")], ("a", 1))),
    ]
    commits = writer.commits
    await asyncio.gather(hand_back, *submissions)
    # Nothing failed, so nobody was retried alone: everything went in one transaction.
    assert writer.commits == commits + 1
    assert await _stored(store, "r1") == [(1, "a#2"), (2, "a#2")]
    assert await _stored(store, "r2") == [(1, "b")]
    assert await _stored(store, "r3") == [(1, "a")]
    # After the hand-back, not even its last holder writes any more.
    await writer.write(store.event_writes("s-r3", [_event("r3", 2, "a-late")], ("a", 1)))
    assert await _stored(store, "r3") == [(1, "a")]


async def test_new_runs_and_cancelled_queued_runs_store_their_events_unfenced(queue: Queue) -> None:
    store, writer = queue
    session = rec.Session("s-new", "alice", "g", rec.SessionStatus.BUSY, {}, 0.0, 0.0)
    run = rec.Run("new", "alice", "s-new", "g", rec.RunStatus.QUEUED, rec.RunOptions(), 0.0)
    # The first events share the transaction that inserts the run (no holder to fence by).
    await writer.write(
        [
            *store.event_writes("s-new", [_event("new", 1, "start")]),
            store.insert_session(session),
            store.insert_run(run, None, None),
        ]
    )
    closing = lambda last: [_event("new", last + 1, "cancel")]  # noqa: E731
    cancelled = await writer.transact(lambda c: claims.cancel_queued(c, "alice", "new", 5.0, closing))
    assert cancelled is not None and cancelled.last_seq == 2
    assert await _stored(store, "new") == [(1, "start"), (2, "cancel")]


# PostgreSQL only: SQLite has one writer, so a claim cannot overlap another transaction there.
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_run_whose_old_holder_is_inserting_is_claimed_only_after_it(queue: Queue) -> None:
    store, writer = queue
    await _running(store, writer, ("r", "a", 1))
    await writer.write(store.event_writes("s-r", [_event("r", 1, "a")], ("a", 1)))
    # Replica "a" lost the lease; its last batch is in flight when "b" requeues and claims.
    async with store.engine.connect() as stale:
        await stale.begin()
        for statement, params in store.event_writes("s-r", [_event("r", 2, "a")], ("a", 1)):
            await stale.execute(statement, params)
        requeued = await writer.transact(lambda c: claims.requeue_expired(c, "b", 2e12))
        assert requeued == ["r"]  # a requeue does not wait for the insert
        claimed = await writer.transact(lambda c: claims.claim(c, "b", 2e12, 3.0, ["g"], 10))
        assert claimed == []  # ... but the claim leaves the run alone while it lasts
        await stale.commit()
    [(run, last_seq)] = await writer.transact(lambda c: claims.claim(c, "b", 2e12, 3.0, ["g"], 10))
    assert (run.run_id, run.attempt, last_seq) == ("r", 2, 2)
    # The old holder's next event is refused; the new holder's takes the seq after the last.
    await writer.write(store.event_writes("s-r", [_event("r", 3, "a")], ("a", 1)))
    await writer.write(store.event_writes("s-r", [_event("r", 3, "b")], ("b", 2)))
    assert await _stored(store, "r") == [(1, "a"), (2, "a"), (3, "b")]
    async with store.engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(run_events))).scalar() == 3


async def test_an_earlier_attempt_neither_ends_nor_hands_back_the_run(queue: Queue) -> None:
    store, writer = queue
    await _running(store, writer, ("r", "a", 2))
    run = await store.get_run("alice", "r")
    stale = dataclasses.replace(run, attempt=1, status=rec.RunStatus.SUCCEEDED, ended_at=9.0, last_seq=1)
    await writer.write([store.run_ended(stale, "a"), store.run_handed_back("r", "a", 1)])
    still = await store.get_run("alice", "r")
    assert (still.status, still.ended_at) == (rec.RunStatus.RUNNING, None)
    await writer.write([store.run_ended(dataclasses.replace(stale, attempt=2), "a")])
    ended = await store.get_run("alice", "r")
    assert (ended.status, ended.ended_at) == (rec.RunStatus.SUCCEEDED, 9.0)
