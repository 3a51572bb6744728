"""Concurrent callers' batches go to the database together.

Each caller's plan (checked, embedded) is queued; a runner task takes
everything queued and runs it in one transaction. While that transaction is
in flight the next callers queue up and share the next one: the busier the
store, the more batches per commit, with no timer. On PostgreSQL a few
groups run at once, on their own connections (a group's searches run one
after another, so one group at a time would leave the pool idle); SQLite has
one writer anyway. A batch whose transaction fails is retried alone, so one
caller's failure is never another's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from langgraph.store.base import Result
from sqlalchemy.ext.asyncio import AsyncEngine

from stepstream.server.storage.store.execute import Executor, Plan
from stepstream.server.storage.store.vectors import VectorIndex

_Waiting = tuple[Plan, "asyncio.Future[list[Result]]"]
# Groups in flight at once, per back end (others: one).
PARALLEL_GROUPS = {"postgresql": 4}


class GroupRunner:
    def __init__(
        self, engine: AsyncEngine, vector_index: VectorIndex, clock: Callable[[], float], indexed: bool
    ) -> None:
        self.engine = engine
        self.vector_index = vector_index
        self.clock = clock
        self.indexed = indexed
        self._queue: list[_Waiting] = []
        self._runners: set[asyncio.Task[None]] = set()
        # A runner is started and has not yet taken the queue: new callers will go with it.
        self._starting = False
        self._parallel = PARALLEL_GROUPS.get(engine.dialect.name, 1)
        self.transactions = 0  # for tests and benchmarks: how many transactions the batches took

    async def submit(self, plan: Plan) -> list[Result]:
        done: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        self._queue.append((plan, done))
        if not self._starting and len(self._runners) < self._parallel:
            self._starting = True
            self._runners.add(asyncio.create_task(self._drain(), name="store-group-runner"))
        return await done

    async def _drain(self) -> None:
        group: list[_Waiting] = []
        try:
            while self._queue:
                group, self._queue = self._queue, []
                self._starting = False
                await self._run(group)
                group = []
        finally:
            # No await between the last look at the queue and leaving the set: a caller that
            # queues after this sees one runner fewer and starts another.
            self._runners.discard(asyncio.current_task())  # type: ignore[arg-type]
            # Only ever starts one runner too many (bounded); never leaves the queue unserved.
            self._starting = False
            for _, done in group:  # cancelled with the loop: nobody may wait forever
                _settle(done, RuntimeError("the store stopped before this batch was done"))

    async def _run(self, group: Sequence[_Waiting]) -> None:
        try:
            results = await self._transact([plan for plan, _ in group])
        except Exception as exc:
            if len(group) == 1:
                _settle(group[0][1], exc)
                return
            for waiting in group:  # find whose batch failed; the others commit on their own
                await self._run([waiting])
            return
        for (_, done), result in zip(group, results, strict=True):
            _settle(done, result)

    async def _transact(self, plans: Sequence[Plan]) -> list[list[Result]]:
        async with self.engine.connect() as conn:
            if not self._needs_transaction(plans):
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            executor = Executor(conn, self.vector_index, self.clock(), self.indexed)
            results = await executor.run(plans)
            await conn.commit()
        self.transactions += 1
        return results

    def _needs_transaction(self, plans: Sequence[Plan]) -> bool:
        """Whether the group's writes take more than one statement.

        Reads need no transaction (at most one refresh statement follows them), and
        neither does a group whose writes are one upsert on PostgreSQL: asyncpg runs
        an executemany atomically. Autocommit spares a BEGIN and a COMMIT round trip.
        SQLite's driver would commit an executemany row by row, so its writes always
        take a transaction.
        """
        puts = [op for plan in plans for op in plan.puts.values()]
        if not puts:
            return False
        if self.engine.dialect.name != "postgresql" or self.indexed:
            return True
        return any(op.value is None for op in puts)


def _settle(done: asyncio.Future[list[Result]], outcome: list[Result] | BaseException) -> None:
    if done.done():  # its caller was cancelled
        return
    if isinstance(outcome, BaseException):
        done.set_exception(outcome)
    else:
        done.set_result(outcome)
