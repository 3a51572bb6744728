"""Group commit: the writes of many concurrent runs go to the database together.

Every caller hands over a few statements with their parameters and awaits the
commit of the transaction that holds them, so "done" is only ever said of work
that is durable. While one transaction is being committed the next callers'
writes pile up and go in the next one: the busier the replica, the more writes
share a transaction, with no timer (the writer only lets the loop turn a few
times first, for writes that arrive as a cascade of callbacks).

A submission may name earlier submissions it depends on (`after`): it then
commits in the same transaction as they do or a later one, and only if they
committed; should one of them fail, it fails too, with nothing written. A
run's events use this to share the transaction of the checkpoint they report
instead of waiting for its commit and taking one of their own.

Within a transaction, writes of the same statement are sent together as one
executemany, in the order of the statement's first appearance, and in
submission order within a statement. Callers therefore submit only inserts,
upserts and updates whose effect does not depend on other statements of the
batch; deletes go through `DatabaseWriter.transaction` instead. A statement
whose effect depends on rows other writes of the batch may change (a run's
fenced event insert reads the run's holder, which a hand-back clears) carries
the execution option `LEADS_BATCH`: such statements go first in the transaction.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Executable

from stepstream.server.core.durability import first_failure
from stepstream.server.storage.db import create_sqlite_writer_engine
from stepstream.server.storage.plain_sql import PlainStatements
from stepstream.server.storage.retry import retrying

log = logging.getLogger(__name__)

Write = tuple[Executable, Mapping[str, Any]]
T = TypeVar("T")

# Execution option of statements sent before the others of a batch (see the module's doc).
LEADS_BATCH = "stepstream_leads_batch"
# A commit still not done after this long is logged: its callers are all waiting on it.
SLOW_COMMIT_SECONDS = 10.0


def _warn_slow(callers: int) -> None:
    log.warning("a group commit for %d callers has taken over %.0f s", callers, SLOW_COMMIT_SECONDS)


@dataclass
class _Pending:
    writes: Sequence[Write]
    # Submissions queued before this one that must commit for it to (see the module's doc).
    after: Sequence[asyncio.Future[None]] = ()
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def failed_dependency(self) -> BaseException | None:
        return first_failure(self.after)


def _leads(statement: Executable) -> bool:
    return bool(statement.get_execution_options().get(LEADS_BATCH))


def _committed(submission: asyncio.Future[None]) -> bool:
    return submission.done() and not submission.cancelled() and submission.exception() is None


class GroupCommitWriter:
    def __init__(
        self, engine: AsyncEngine, max_writes_per_commit: int = 5_000, retry_seconds: float = 30.0
    ) -> None:
        self._engine = engine
        # How long a batch is retried while the database is unreachable (storage/retry.py).
        self._retry_seconds = retry_seconds
        self._max = max_writes_per_commit
        self._queue: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.commits = 0
        self.writes = 0
        # SQLite has one write lock and the async driver pays a thread hop per statement: one
        # thread of our own holds the lock and commits a whole batch in a single hop.
        self._sync_engine: sa.Engine | None = None
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        self._plain: PlainStatements | None = None
        if engine.dialect.name == "sqlite":
            self._sync_engine = create_sqlite_writer_engine(engine.url)
            self._plain = PlainStatements(self._sync_engine.dialect)
            self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="group-commit-writer")
            self._task.add_done_callback(self._stopped)

    def _stopped(self, task: asyncio.Task[None]) -> None:
        """Should the loop ever die, fail what waits on it instead of leaving it waiting forever."""
        error = None if task.cancelled() else task.exception()
        if error is None and (self._closed or task.cancelled()) and not self._queue:
            return
        log.error("the group-commit writer stopped with %d writes queued", len(self._queue), exc_info=error)
        self._closed = True
        failure = error or RuntimeError("the database writer stopped")
        for pending in self._queue:
            if not pending.done.done():
                pending.done.set_exception(failure)
        self._queue.clear()

    async def write(self, writes: Sequence[Write]) -> None:
        """Return once `writes` are committed; raise what the database raised for them."""
        await self.submit(writes)

    def submit(
        self, writes: Sequence[Write], after: Sequence[asyncio.Future[None]] = ()
    ) -> asyncio.Future[None]:
        """Queue `writes`; the future resolves when they are committed.

        `after`: futures this writer returned for earlier submissions. The writes
        commit with them or after them, and fail without being written if one fails.
        """
        if self._closed:
            raise RuntimeError("the database writer is closed")
        # What already committed is nothing to wait for (a dropped one is a failure: kept).
        pending = _Pending(writes, tuple(d for d in after if not _committed(d)))
        if (error := pending.failed_dependency()) is not None:
            pending.done.set_exception(error)
            return pending.done
        if not writes and not pending.after:
            pending.done.set_result(None)
            return pending.done
        self._queue.append(pending)
        self._wakeup.set()
        self.start()
        return pending.done

    async def transact(self, fn: Callable[[sa.Connection], T]) -> T:
        """`fn(conn)` in a transaction of its own, for writes whose result the caller needs.

        On SQLite it runs on the writer's thread, between batches, so it never waits for
        the file's write lock; elsewhere on a connection of the engine's pool.
        """
        if self._thread is not None:
            return await asyncio.get_running_loop().run_in_executor(self._thread, self._transact_sync, fn)
        async with self._engine.begin() as conn:
            return await conn.run_sync(fn)

    def _transact_sync(self, fn: Callable[[sa.Connection], T]) -> T:
        assert self._sync_engine is not None
        with self._sync_engine.begin() as conn:
            return fn(conn)

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        self._closed = True
        self._wakeup.set()
        if self._task is not None:
            # A loop that died has been logged (and its callers failed) by _stopped.
            with contextlib.suppress(Exception):
                await self._task
            self._task = None
        if self._thread is not None and self._sync_engine is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._sync_engine.dispose)
            self._thread.shutdown(wait=True)

    async def _loop(self) -> None:
        while True:
            if not self._queue:
                if self._closed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # Writes often arrive as a cascade of callbacks (a task's writes, its events, the
            # next checkpoint): a few turns of the loop let them share this commit.
            for _ in range(3):
                await asyncio.sleep(0)
            batch = self._take_batch()
            if not batch:
                continue
            try:
                await retrying(functools.partial(self._commit, batch), self._retry_seconds, "a group commit")
            except Exception as exc:
                # One bad write must not fail its neighbours: retry each caller alone.
                log.info("a batch of %d writes failed (%s); retrying each caller alone", len(batch), exc)
                for pending in batch:
                    if (error := pending.failed_dependency()) is not None:
                        pending.done.set_exception(error)
                        continue
                    try:
                        await self._commit([pending])
                    except Exception as exc:
                        log.warning("writes failed: %s", exc)
                        if not pending.done.done():
                            pending.done.set_exception(exc)
                    else:
                        if not pending.done.done():
                            pending.done.set_result(None)
                continue
            for pending in batch:
                if not pending.done.done():
                    pending.done.set_result(None)

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        count = 0
        while self._queue and (not batch or count + len(self._queue[0].writes) <= self._max):
            pending = self._queue.pop(0)
            if (error := pending.failed_dependency()) is not None:
                pending.done.set_exception(error)  # what it depends on failed in an earlier batch
                continue
            batch.append(pending)
            count += len(pending.writes)
        return batch

    async def _commit(self, batch: Sequence[_Pending]) -> None:
        slow = asyncio.get_running_loop().call_later(SLOW_COMMIT_SECONDS, _warn_slow, len(batch))
        try:
            await self._commit_batch(batch)
        finally:
            slow.cancel()

    async def _commit_batch(self, batch: Sequence[_Pending]) -> None:
        groups: dict[int, tuple[Executable, list[Mapping[str, Any]]]] = {}
        for pending in batch:
            for statement, params in pending.writes:
                group = groups.get(id(statement))
                if group is None:
                    groups[id(statement)] = (statement, [params])
                else:
                    group[1].append(params)
        # Leading statements first; the others keep the order of their first appearance.
        ordered = sorted(groups.values(), key=lambda g: not _leads(g[0]))
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._commit_sync, ordered)
        else:
            async with self._engine.begin() as conn:
                await execute_groups(conn, ordered)
        self.commits += 1
        self.writes += sum(len(p.writes) for p in batch)

    def _commit_sync(self, groups: list[tuple[Executable, list[Mapping[str, Any]]]]) -> None:
        assert self._sync_engine is not None and self._plain is not None
        with self._sync_engine.begin() as conn:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                for statement, params in groups:
                    by_keys: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
                    for row in params:
                        by_keys.setdefault(tuple(row), []).append(row)
                    for keys, rows in by_keys.items():
                        plain = self._plain.get(statement, keys)
                        if plain is None:
                            conn.execute(statement, rows if len(rows) > 1 else rows[0])
                        else:
                            cursor.executemany(plain.sql, [plain.row(row) for row in rows])
            finally:
                cursor.close()


async def execute_groups(
    conn: AsyncConnection, groups: Sequence[tuple[Executable, list[Mapping[str, Any]]]] | Any
) -> None:
    for statement, params in groups:
        await conn.execute(statement, params if len(params) > 1 else params[0])
