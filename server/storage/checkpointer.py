"""LangGraph checkpointer on stepstream's SQLAlchemy engine and schema.

Sessions, runs and checkpoints share one database and one migration history
(DESIGN §5). Checkpoints and pending writes are written through the
`GroupCommitWriter`, so the supersteps of many concurrent runs share
transactions, and `aput`/`aput_writes` return only once their transaction has
committed, except inside `deferred_commits` (a run executing in the service):
there they return once the writes are queued, and the run waits for their
commit itself. Channel values are stored once per channel version
(checkpoint_tables.py), so storage grows with what changed.

The sync methods are thin wrappers that run the async ones on the event loop
the saver serves, like LangGraph's own async savers: they are for code on other
threads (sync nodes, `graph.invoke` in a worker thread) and raise on the loop's
own thread, where they would deadlock. A separate sync engine would compete
with the writer for SQLite's single write lock and bypass group commit.

Reads go through a `Reader` (reads.py): a checkpoint load, or a page of
`alist`, is one blocking function run in one hop, not a hop per statement.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import random
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from sqlalchemy.ext.asyncio import AsyncEngine

from stepstream.server.storage import checkpoint_maintenance as maintenance
from stepstream.server.storage.batch import GroupCommitWriter
from stepstream.server.storage.checkpoint_reads import (
    LIST_PAGE,
    Loaded,
    Query,
    Search,
    assemble,
    checkpoint_query,
    load_row,
    related_queries,
    search,
)
from stepstream.server.storage.checkpoint_sql import Statements, checkpoint_rows, task_write_rows
from stepstream.server.storage.checkpoint_tables import checkpoints
from stepstream.server.storage.reads import Reader

T = TypeVar("T")

# How long checkpoint_committed waits for a put, and how many committed ids it remembers.
COMMIT_WAIT_S = 30.0
# How long it waits for a put of its own before asking the database.
STORED_CHECK_S = 0.5
REMEMBERED_COMMITS = 50_000

# The writes queued by the run executing in this context, inside `deferred_commits`.
_deferred: contextvars.ContextVar[list[asyncio.Future[None]] | None] = contextvars.ContextVar(
    "stepstream_deferred_commits", default=None
)


def _remember(recent: collections.OrderedDict[str, T], key: str, value: T) -> None:
    """Add to a bounded record of settled saves, forgetting the oldest beyond REMEMBERED_COMMITS."""
    recent[key] = value
    if len(recent) > REMEMBERED_COMMITS:
        recent.popitem(last=False)


class SQLAlchemyCheckpointSaver(BaseCheckpointSaver[str]):
    def __init__(
        self,
        engine: AsyncEngine,
        writer: GroupCommitWriter | None = None,
        serde: SerializerProtocol | None = None,
        reader: Reader | None = None,
    ) -> None:
        super().__init__(serde=serde)
        self.engine = engine
        # Without a shared writer the saver groups its own writes; the service
        # passes its writer so checkpoints, events and run status share commits.
        self.writer = writer or GroupCommitWriter(engine)
        self._owns_writer = writer is None
        # Likewise the service shares one reader (and its threads) between the saver and the store.
        self.reader = reader or Reader(engine)
        self._owns_reader = reader is None
        self._stmts = Statements.for_dialect(engine.dialect.name)
        # Checkpoint ids whose aput has committed (newest last); the commits of those queued
        # and not yet settled, and of those that failed; and those someone waits to see queued.
        self._committed: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._saving: dict[str, asyncio.Future[None]] = {}
        self._failed: collections.OrderedDict[str, asyncio.Future[None]] = collections.OrderedDict()
        self._save_waiters: dict[str, asyncio.Future[asyncio.Future[None] | None]] = {}
        # Threads whose first run executes here on a session this process just created: the
        # run's first checkpoint read is known to find nothing (see `new_thread`).
        self._new_threads: set[str] = set()
        # The loop the sync wrappers hand work to; taken on first async use if not running yet.
        self._loop: asyncio.AbstractEventLoop | None = None
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()

    async def aclose(self) -> None:
        """Commit queued writes and stop the writer, and close the reader, if this saver made them."""
        if self._owns_writer:
            await self.writer.close()
        if self._owns_reader:
            await self.reader.close()

    # --- async API ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def new_thread(self, thread_id: str) -> Iterator[None]:
        """While the first run of a session created by this process executes here.

        Its first read of the thread's latest checkpoint is answered "none" without a
        query. Nothing else can have written to the thread: the session was stored with
        this run, and a session runs one run at a time.
        """
        self._new_threads.add(thread_id)
        try:
            yield
        finally:
            self._new_threads.discard(thread_id)

    @contextlib.contextmanager
    def deferred_commits(self) -> Iterator[list[asyncio.Future[None]]]:
        """Within: `aput` and `aput_writes` queue their writes and return without awaiting the commit.

        LangGraph chains a run's checkpoint saves (each starts once the one before
        returned): waiting for every commit there made each superstep of a run a
        transaction of its own, in turn. Deferred, a run's saves reach the writer
        together and share commits. Yields the commit futures, which the caller
        awaits before it says the run is over; `checkpoint_committed` still says
        when each checkpoint is durable, and reads in the context wait for them.
        """
        pending: list[asyncio.Future[None]] = []
        token = _deferred.set(pending)
        try:
            yield pending
        finally:
            _deferred.reset(token)

    async def _queued(self, writes: Any, checkpoint_id: str | None = None) -> None:
        """Write, and return at the commit; inside `deferred_commits`, return once queued.

        The commit is recorded from the writer's future itself, so a caller cancelled
        while it waits (the writes still commit) neither loses nor falsifies it.
        """
        done = self.writer.submit(writes)
        if checkpoint_id is not None:
            self._saving[checkpoint_id] = done
            done.add_done_callback(functools.partial(self._settled, checkpoint_id))
            waiter = self._save_waiters.pop(checkpoint_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(done)
        pending = _deferred.get()
        if pending is None:
            await asyncio.shield(done)
        else:
            pending.append(done)

    def _settled(self, checkpoint_id: str, done: asyncio.Future[None]) -> None:
        if self._saving.get(checkpoint_id) is done:
            del self._saving[checkpoint_id]
        if not done.cancelled() and done.exception() is None:
            _remember(self._committed, checkpoint_id, None)
        else:  # whoever asks later learns why, instead of waiting for a save that will not come
            _remember(self._failed, checkpoint_id, done)

    @staticmethod
    async def _own_writes_committed() -> None:
        """Reads of a run with deferred commits see what the run wrote (LangGraph reads at starts)."""
        pending = _deferred.get()
        if pending:
            await asyncio.shield(asyncio.gather(*pending))

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        self._remember_loop()
        await self._own_writes_committed()
        if self._new_threads:
            conf = config["configurable"]
            thread_id = conf.get("thread_id")
            latest_of_root = not conf.get("checkpoint_ns") and not conf.get("checkpoint_id")
            if latest_of_root and thread_id in self._new_threads:
                self._new_threads.discard(thread_id)
                return None
        return await self.reader.run(functools.partial(self._get_tuple, checkpoint_query(config)))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        self._remember_loop()
        await self._own_writes_committed()
        query = search(self.engine.dialect.name, config, filter, before)
        remaining = limit
        # Without a filter SQL alone decides, so a small limit fetches only what it returns.
        size = LIST_PAGE if query.filter or not limit else min(limit, LIST_PAGE)
        after: tuple[Any, ...] | None = None
        while remaining is None or remaining > 0:
            # One short read per page: no transaction stays open while the caller consumes.
            page = functools.partial(self._list_page, query, after, size, remaining)
            tuples, fetched, last = await self.reader.run(page)
            if remaining is not None:
                remaining -= len(tuples)
            for tup in tuples:
                yield tup
            if fetched < size:
                return
            after = last

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        self._remember_loop()
        # Serialised before the first await: LangGraph may reuse the objects once we yield.
        writes, next_config = checkpoint_rows(
            self._stmts, self.serde, config, checkpoint, metadata, new_versions
        )
        await self._queued(writes, checkpoint["id"])
        return next_config

    async def checkpoint_save(
        self, checkpoint_id: str, timeout: float = COMMIT_WAIT_S, thread_id: str | None = None
    ) -> asyncio.Future[None] | None:
        """The commit of `checkpoint_id`'s save, once its aput has queued it (it may not have started yet).

        LangGraph announces a checkpoint before its background put runs. Writes that
        report the checkpoint may be submitted with this future as their `after`:
        they then share its transaction or follow it, and are never stored without
        it. None when the checkpoint is already committed: by this saver, or (given
        the thread) found stored by another process, as for a run resumed here.
        Raises TimeoutError if the save is neither queued nor found within `timeout`.
        """
        if checkpoint_id in self._committed:
            return None
        if (saving := self._saving.get(checkpoint_id) or self._failed.get(checkpoint_id)) is not None:
            return saving
        loop = asyncio.get_running_loop()
        waiter = self._save_waiters.get(checkpoint_id)
        if waiter is None:
            waiter = self._save_waiters[checkpoint_id] = loop.create_future()
        deadline = loop.time() + timeout
        try:
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError(f"checkpoint {checkpoint_id} was not saved in {timeout:g} s")
                try:
                    return await asyncio.wait_for(asyncio.shield(waiter), min(left, STORED_CHECK_S))
                except TimeoutError:
                    if thread_id is not None and await self._stored(thread_id, checkpoint_id):
                        return None
        finally:
            if not waiter.done() and self._save_waiters.get(checkpoint_id) is waiter:
                del self._save_waiters[checkpoint_id]

    async def checkpoint_committed(
        self, checkpoint_id: str, timeout: float = COMMIT_WAIT_S, thread_id: str | None = None
    ) -> bool:
        """Wait until the aput of `checkpoint_id` has committed (see `checkpoint_save`).

        The service awaits this before telling anyone a superstep is done (with
        "sync" durability). False if it is not committed within `timeout`; raises
        what the put raised if it failed.
        """
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            save = await self.checkpoint_save(checkpoint_id, timeout, thread_id)
        except TimeoutError:
            return False
        if save is None:
            return True
        try:
            left = max(0.0, deadline - asyncio.get_running_loop().time())
            await asyncio.wait_for(asyncio.shield(save), left)
        except TimeoutError:
            return False
        except asyncio.CancelledError:
            if save.cancelled():  # the save was dropped, not this wait
                raise RuntimeError(f"the save of checkpoint {checkpoint_id} stopped") from None
            raise
        return True

    async def _stored(self, thread_id: str, checkpoint_id: str) -> bool:
        query = sa.select(sa.literal(1)).where(
            checkpoints.c.thread_id == thread_id, checkpoints.c.checkpoint_id == checkpoint_id
        )
        return bool(await self.reader.run(lambda conn: conn.execute(query.limit(1)).first()))

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self._queued(task_write_rows(self._stmts, self.serde, config, writes, task_id, task_path))

    async def adelete_thread(self, thread_id: str) -> None:
        await maintenance.delete_threads(self.engine, [str(thread_id)])

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await maintenance.delete_for_runs(self.engine, self.serde, [str(r) for r in run_ids])

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await maintenance.copy_thread(self.engine, self._stmts, str(source_thread_id), str(target_thread_id))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        ids = [str(t) for t in thread_ids]
        if strategy == "keep_latest":
            await maintenance.prune(self.engine, self.serde, ids, keep=1)
        elif strategy == "delete":
            await maintenance.delete_threads(self.engine, ids)
        else:
            raise ValueError(f"unknown prune strategy {strategy!r}: use 'keep_latest' or 'delete'")

    async def aprune_history(self, keep: int, thread_ids: Sequence[str] | None = None) -> None:
        """Retention: keep the newest `keep` checkpoints per thread and namespace (all threads by default).

        Blobs the kept checkpoints still refer to stay, as do the ancestors a
        kept checkpoint's DeltaChannels are rebuilt from.
        """
        if thread_ids is None:
            await maintenance.prune_all(self.engine, self.serde, keep)
        else:
            await maintenance.prune(self.engine, self.serde, [str(t) for t in thread_ids], keep)

    def get_next_version(self, current: str | None, channel: None) -> str:
        # The official savers' format: a zero-padded counter that sorts as text, plus a
        # random fraction so two forks of one version never collide.
        if current is None:
            number = 0
        elif isinstance(current, int):
            number = current
        else:
            number = int(current.split(".")[0])
        return f"{number + 1:032}.{random.random():016}"

    # --- reads: each runs whole, in one hop, on a reader connection -------------------------------

    def _get_tuple(self, query: Query, conn: sa.Connection) -> CheckpointTuple | None:
        row = conn.execute(*query).first()
        if row is None:
            return None
        return self._complete(conn, [load_row(self.serde, row)])[0]

    def _list_page(
        self,
        query: Search,
        after: tuple[Any, ...] | None,
        size: int,
        remaining: int | None,
        conn: sa.Connection,
    ) -> tuple[Sequence[CheckpointTuple], int, tuple[Any, ...] | None]:
        """One page of `alist`: its tuples, how many rows SQL returned, and the last row's key."""
        rows = conn.execute(query.page(after, size)).all()
        decoded = (load_row(self.serde, row) for row in rows)
        loaded = [item for item in decoded if query.accepts(item.metadata)]
        if remaining is not None:
            loaded = loaded[:remaining]
        return self._complete(conn, loaded), len(rows), query.key(rows[-1]) if rows else None

    def _complete(self, conn: sa.Connection, loaded: Sequence[Loaded]) -> Sequence[CheckpointTuple]:
        """Fetch the blobs and pending writes of `loaded` and build the tuples."""
        if not loaded:
            return []
        blob_queries, write_queries = related_queries(loaded)
        blob_rows = [row for query in blob_queries for row in conn.execute(*query)]
        write_rows = [row for query in write_queries for row in conn.execute(*query)]
        return assemble(self.serde, loaded, blob_rows, write_rows)

    # --- sync API: the async methods, run on the saver's loop from another thread -------------

    def _remember_loop(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()

    def _blocking(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._loop
        try:
            on_loop = loop is not None and asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if loop is None or on_loop:
            coro.close()
            raise asyncio.InvalidStateError(
                "SQLAlchemyCheckpointSaver's sync methods run its async ones on the event loop it "
                "serves: call them from another thread (or use the a* methods / ainvoke on the loop)"
            )
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._blocking(self.aget_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        pages = self.alist(config, filter=filter, before=before, limit=limit)

        async def next_tuple() -> CheckpointTuple:
            return await anext(pages)

        while True:
            try:
                yield self._blocking(next_tuple())
            except StopAsyncIteration:
                return

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._blocking(self.aput(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._blocking(self.aput_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._blocking(self.adelete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._blocking(self.adelete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._blocking(self.acopy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._blocking(self.aprune(thread_ids, strategy=strategy))
