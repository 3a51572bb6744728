"""Run events: stored through group commit, then delivered live to subscribers.

An event is published to live subscribers only after the transaction holding
it has committed, so nobody is told of work that could still be lost. A join
first subscribes, then replays what is stored after the cursor, then follows
the live feed, skipping what the replay already delivered: no gap, no repeat.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from stepstream.server.core.events import EventFilter, RunEvent
from stepstream.server.core.store import Store, writes_for_events
from stepstream.server.storage.batch import GroupCommitWriter, Write

# How often a join polls the database for a run executing on another replica.
POLL_SECONDS = 0.05
# Published events kept in memory per local run, so joining it needs no database read.
RECENT_EVENTS = 2_000


class _RunFeed:
    """Live state of one run executing in this process."""

    __slots__ = (
        "ended",
        "flushed",
        "next_seq",
        "pending",
        "pending_writes",
        "recent",
        "recent_from",
        "session_id",
        "subscribers",
    )

    def __init__(self, session_id: str, last_seq: int) -> None:
        self.session_id = session_id
        self.next_seq = last_seq + 1
        self.subscribers: list[asyncio.Queue[RunEvent | None]] = []
        self.ended = False
        # Events appended during the current loop iteration, stored together by one flush.
        self.pending: list[RunEvent] = []
        self.pending_writes: list[Write] = []
        self.flushed: asyncio.Future[None] | None = None
        # Published events from seq recent_from on (earlier ones are only in the database).
        self.recent: list[RunEvent] = []
        self.recent_from = last_seq + 1


class EventLog:
    def __init__(self, store: Store, writer: GroupCommitWriter) -> None:
        self._store = store
        self._writer = writer
        self._feeds: dict[str, _RunFeed] = {}

    def open(self, run_id: str, session_id: str, last_seq: int) -> None:
        if run_id not in self._feeds:
            self._feeds[run_id] = _RunFeed(session_id, last_seq)

    def last_seq(self, run_id: str) -> int:
        return self._feeds[run_id].next_seq - 1

    def append(
        self,
        run_id: str,
        items: Sequence[tuple[str, tuple[str, ...], dict[str, Any]]],
        extra_writes: Sequence[Write] = (),
    ) -> asyncio.Future[None]:
        """Number, store and (after commit) publish events; extra writes share their transaction.

        What a run appends within one turn of the event loop (a token burst, a
        superstep's task events) is stored as one submission: the future is
        shared, and resolves once that submission has committed.
        """
        feed = self._feeds[run_id]
        now = time.time()
        for kind, namespace, data in items:
            feed.pending.append(RunEvent(run_id, feed.next_seq, now, kind, namespace, data))
            feed.next_seq += 1
        feed.pending_writes.extend(extra_writes)
        if feed.flushed is None:
            loop = asyncio.get_running_loop()
            feed.flushed = loop.create_future()
            loop.call_soon(self._flush, feed)
        return feed.flushed

    def _flush(self, feed: _RunFeed) -> None:
        batch, writes, flushed = feed.pending, feed.pending_writes, feed.flushed
        feed.pending, feed.pending_writes, feed.flushed = [], [], None
        assert flushed is not None
        try:
            done = self._writer.submit([*writes_for_events(feed.session_id, batch), *writes])
        except Exception as exc:
            flushed.set_exception(exc)
            return

        def committed(fut: asyncio.Future[None]) -> None:
            self._publish(feed, batch, fut)
            if flushed.done():
                return
            if fut.cancelled():
                flushed.cancel()
            elif fut.exception() is not None:
                flushed.set_exception(fut.exception())  # type: ignore[arg-type]
            else:
                flushed.set_result(None)

        done.add_done_callback(committed)

    def _publish(self, feed: _RunFeed, batch: list[RunEvent], fut: asyncio.Future[None]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        feed.recent.extend(batch)
        if len(feed.recent) > RECENT_EVENTS:
            del feed.recent[: len(feed.recent) - RECENT_EVENTS]
            feed.recent_from = feed.recent[0].seq
        for event in batch:
            for queue in feed.subscribers:
                queue.put_nowait(event)
            if event.terminal:
                feed.ended = True
                for queue in feed.subscribers:
                    queue.put_nowait(None)

    def close(self, run_id: str) -> None:
        """Forget a run's live feed (its events stay stored)."""
        self._feeds.pop(run_id, None)

    async def follow(
        self, run_id: str, after_seq: int, event_filter: EventFilter, is_active: Any = None
    ) -> AsyncIterator[list[RunEvent]]:
        """Yield batches of the run's events with seq > after_seq until its terminal event."""
        feed = self._feeds.get(run_id)
        queue: asyncio.Queue[RunEvent | None] = asyncio.Queue()
        if feed is not None:
            feed.subscribers.append(queue)
        try:
            last = after_seq
            # All that follows the cursor is still in memory: no read, and no await, so no gap.
            in_memory = feed is not None and feed.recent_from <= after_seq + 1
            if feed is not None and in_memory:
                held = [e for e in feed.recent if e.seq > after_seq]
                if held:
                    last = held[-1].seq
                    chosen = [e for e in held if event_filter.accepts(e)]
                    if chosen:
                        yield chosen
                    if held[-1].terminal:
                        return
            while not in_memory:
                rows = await self._store.events_after(run_id, last)
                stored = [RunEvent.from_row(run_id, seq, kind, body) for seq, kind, body in rows]
                if stored:
                    last = stored[-1].seq
                    chosen = [e for e in stored if event_filter.accepts(e)]
                    if chosen:
                        yield chosen
                    if stored[-1].terminal:
                        return
                if len(rows) < 1000:
                    break
            if feed is None:
                # Executing elsewhere (or already over): follow the database.
                async for batch in self._poll(run_id, last, event_filter):
                    yield batch
                return
            while True:
                event = await queue.get()
                if event is None:
                    return
                batch = [event]
                while not queue.empty():
                    item = queue.get_nowait()
                    if item is None:
                        break
                    batch.append(item)
                fresh = [e for e in batch if e.seq > last]
                if not fresh:
                    continue
                last = fresh[-1].seq
                chosen = [e for e in fresh if event_filter.accepts(e)]
                if chosen:
                    yield chosen
                if fresh[-1].terminal:
                    return
        finally:
            if feed is not None and queue in feed.subscribers:
                feed.subscribers.remove(queue)

    async def _poll(self, run_id: str, last: int, event_filter: EventFilter) -> AsyncIterator[list[RunEvent]]:
        while True:
            rows = await self._store.events_after(run_id, last)
            if not rows:
                if await self._store.run_is_over(run_id):
                    # Ended, and the cursor is at (or past) its last event: nothing more will come.
                    if not await self._store.events_after(run_id, last):
                        return
                    continue
                await asyncio.sleep(POLL_SECONDS)
                continue
            stored = [RunEvent.from_row(run_id, seq, kind, body) for seq, kind, body in rows]
            last = stored[-1].seq
            chosen = [e for e in stored if event_filter.accepts(e)]
            if chosen:
                yield chosen
            if stored[-1].terminal:
                return
