"""Run events: stored through group commit, then delivered live to subscribers.

An event is published to live subscribers only after the transaction holding
it has committed, so nobody is told of work that could still be lost (the rule
durability.py states and applies). A join
first subscribes, then replays what is stored after the cursor, then follows
the live feed, skipping what the replay already delivered: no gap, no repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence

from stepstream.server.core.events import EventFilter, EventItem, RunEvent
from stepstream.server.core.ports import NOTIFY_EVENTS, Store, Write, Writer

# How often a join polls the database for a run executing on another replica, when the
# database cannot notify (SQLite) ...
POLL_SECONDS = 0.05
# ... and when it can (PostgreSQL): then polling is only the backstop of a lost notification.
NOTIFIED_POLL_SECONDS = 1.0
# Published events kept in memory per local run, so joining it needs no database read.
RECENT_EVENTS = 2_000
# Stored events read per query when replaying from the database.
STORED_PAGE = 1_000


class _RunFeed:
    """Live state of one run executing in this process."""

    __slots__ = (
        "flushed",
        "holder",
        "next_seq",
        "pending",
        "pending_after",
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
        # Events appended during the current loop iteration, stored together by one flush.
        self.pending: list[RunEvent] = []
        self.pending_writes: list[Write] = []
        # Submissions of the writer (checkpoint saves) the pending events must not be stored without.
        self.pending_after: list[asyncio.Future[None]] = []
        self.flushed: asyncio.Future[None] | None = None
        # Published events from seq recent_from on (earlier ones are only in the database).
        self.recent: list[RunEvent] = []
        self.recent_from = last_seq + 1
        # (replica, attempt) executing the run: its events are stored only while it holds the
        # run. None while the run's own row is being inserted with its first events.
        self.holder: tuple[str, int] | None = None


class EventLog:
    def __init__(self, store: Store, writer: Writer) -> None:
        self._store = store
        self._writer = writer
        self._feeds: dict[str, _RunFeed] = {}
        # Joins of runs executing elsewhere, woken when the database says their run has news.
        self._remote: dict[str, set[asyncio.Event]] = {}
        self.notified = False
        # Told how many events each batch sent to a subscriber held (the events-streamed metric).
        self.on_streamed: Callable[[int], None] | None = None

    def wake_all(self) -> None:
        for waiting in self._remote.values():
            for event in waiting:
                event.set()

    def wake(self, run_id: str) -> None:
        """New events of `run_id` are committed (a notification from the database)."""
        for event in self._remote.get(run_id, ()):
            event.set()

    def open(
        self, run_id: str, session_id: str, last_seq: int, holder: tuple[str, int] | None = None
    ) -> None:
        if run_id not in self._feeds:
            self._feeds[run_id] = _RunFeed(session_id, last_seq)
            self._feeds[run_id].holder = holder

    def hold(self, run_id: str, replica: str, attempt: int) -> None:
        """From now on the run's events are fenced by its holder (its row is stored)."""
        self._feeds[run_id].holder = (replica, attempt)

    def last_seq(self, run_id: str) -> int:
        return self._feeds[run_id].next_seq - 1

    def append(
        self,
        run_id: str,
        items: Sequence[EventItem],
        extra_writes: Sequence[Write] = (),
        after: Sequence[asyncio.Future[None]] = (),
    ) -> asyncio.Future[None]:
        """Number, store and (after commit) publish events; extra writes share their transaction.

        `after`: earlier submissions to the writer (the saves of the checkpoints the
        events report); the events are stored with or after them, and never without.

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
        feed.pending_after.extend(after)
        if feed.flushed is None:
            loop = asyncio.get_running_loop()
            feed.flushed = loop.create_future()
            loop.call_soon(self._flush, feed)
        return feed.flushed

    def _flush(self, feed: _RunFeed) -> None:
        batch, writes, after, flushed = feed.pending, feed.pending_writes, feed.pending_after, feed.flushed
        feed.pending, feed.pending_writes, feed.pending_after, feed.flushed = [], [], [], None
        assert flushed is not None
        if self._store.notifies and batch:
            writes = [*writes, *self._store.notify_writes(NOTIFY_EVENTS + batch[0].run_id)]
        try:
            done = self._writer.submit(
                [*self._store.event_writes(feed.session_id, batch, feed.holder), *writes], after
            )
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
                for queue in feed.subscribers:
                    queue.put_nowait(None)

    def close(self, run_id: str) -> None:
        """Forget a run's live feed (its events stay stored); its followers go on from the database."""
        feed = self._feeds.pop(run_id, None)
        if feed is not None:
            for queue in feed.subscribers:
                queue.put_nowait(None)

    async def follow(
        self, run_id: str, after_seq: int, event_filter: EventFilter
    ) -> AsyncIterator[list[RunEvent]]:
        """Yield batches of the run's events with seq > after_seq until its terminal event."""
        feed = self._feeds.get(run_id)
        queue: asyncio.Queue[RunEvent | None] = asyncio.Queue()
        if feed is not None:
            feed.subscribers.append(queue)
        try:
            last = after_seq
            async for batch in self._batches(run_id, feed, queue, after_seq):
                # Sources overlap where they meet (stored, then live): drop what was delivered.
                fresh = [e for e in batch if e.seq > last]
                if not fresh:
                    continue
                last = fresh[-1].seq
                chosen = [e for e in fresh if event_filter.accepts(e)]
                if chosen:
                    if self.on_streamed is not None:
                        self.on_streamed(len(chosen))
                    yield chosen
                if fresh[-1].terminal:
                    return
        finally:
            if feed is not None and queue in feed.subscribers:
                feed.subscribers.remove(queue)

    async def _batches(
        self, run_id: str, feed: _RunFeed | None, queue: asyncio.Queue[RunEvent | None], after_seq: int
    ) -> AsyncIterator[list[RunEvent]]:
        """The run's events after the cursor, in seq order: what is held, then what comes."""
        last = after_seq
        if feed is not None and feed.recent_from <= after_seq + 1:
            # All that follows the cursor is still in memory: no read, and no await, so no gap.
            yield [e for e in feed.recent if e.seq > after_seq]
        else:
            while True:
                stored = await self._stored(run_id, last)
                if stored:
                    last = stored[-1].seq
                    yield stored
                if len(stored) < STORED_PAGE:
                    break
        if feed is None:
            async for stored in self._follow_stored(run_id, last):
                yield stored
            return
        while True:
            event = await queue.get()
            if event is None:
                break
            batch = [event]
            while not queue.empty() and (item := queue.get_nowait()) is not None:
                batch.append(item)
            last = max(last, batch[-1].seq)
            yield batch
        # The live feed ended (after its terminal event, follow() has already returned) or was
        # closed without publishing one: the rest, if any, is in the database.
        async for stored in self._follow_stored(run_id, last):
            yield stored

    async def _follow_stored(self, run_id: str, last: int) -> AsyncIterator[list[RunEvent]]:
        """A run executing elsewhere (or already over): follow the database."""
        news = asyncio.Event()
        self._remote.setdefault(run_id, set()).add(news)
        try:
            while True:
                news.clear()  # before the read: news arriving during it is not lost
                stored = await self._stored(run_id, last)
                if stored:
                    last = stored[-1].seq
                    yield stored
                elif await self._store.run_is_over(run_id) and not await self._stored(run_id, last):
                    return  # ended, and the cursor is at (or past) its last event
                else:
                    wait = NOTIFIED_POLL_SECONDS if self.notified else POLL_SECONDS
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(news.wait(), wait)
        finally:
            waiting = self._remote.get(run_id)
            if waiting is not None:
                waiting.discard(news)
                if not waiting:
                    del self._remote[run_id]

    async def _stored(self, run_id: str, after_seq: int) -> list[RunEvent]:
        rows = await self._store.events_after(run_id, after_seq, limit=STORED_PAGE)
        return [RunEvent.from_row(run_id, seq, kind, body) for seq, kind, body in rows]
