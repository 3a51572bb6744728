"""`SQLStore`: LangGraph's long-term `BaseStore` on the project's SQLAlchemy engine.

One instance serves one tenant (`owner`); `scoped(owner)` gives another
tenant's view sharing the engine, the embedder and the TTL sweeper, so a
tenant only ever reads and writes its own items. Each batch runs in one
transaction, shared with the batches of callers pending at the same time
(group.py); embeddings are computed before it opens, never inside it.

The async methods are the real ones. The sync methods (for sync graph nodes,
which run in worker threads) run them on the event loop the store serves and
wait; called on that loop itself they would deadlock, so they refuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from langgraph.store.base import BaseStore, IndexConfig, Op, Result, TTLConfig
from sqlalchemy.ext.asyncio import AsyncEngine

from stepstream.server.storage.store import embedding, execute, sql
from stepstream.server.storage.store.execute import MAX_ITEM_BYTES
from stepstream.server.storage.store.group import GroupRunner
from stepstream.server.storage.store.vectors import ExactScanIndex, VectorIndex

log = logging.getLogger(__name__)
T = TypeVar("T")

# How often expired items are deleted when the TTL config does not say (LangGraph's default too).
DEFAULT_SWEEP_MINUTES = 5.0
# The owner column's width (tables.py).
MAX_OWNER_CHARS = 128


@dataclass
class _Shared:
    """What every tenant's view of one store shares."""

    engine: AsyncEngine
    index: embedding.Index | None
    vector_index: VectorIndex
    clock: Callable[[], float]
    max_item_bytes: int
    runner: GroupRunner
    loop: asyncio.AbstractEventLoop | None = None
    sweeper: asyncio.Task[None] | None = None
    sweeps: int = field(default=0)


class SQLStore(BaseStore):
    supports_ttl = True

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
        owner: str = "",
        max_item_bytes: int = MAX_ITEM_BYTES,
        vector_index: VectorIndex | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """engine: migrated to head (tables in tables.py). index: LangGraph's IndexConfig
        ({"dims", "embed", "fields"}) for semantic search. ttl: LangGraph's TTLConfig (minutes).
        clock: seconds since the epoch; tests pass their own to make items expire."""
        self.index_config = index
        self.ttl_config = ttl
        self.owner = owner
        resolved = embedding.resolve(index)
        vectors = vector_index or ExactScanIndex()
        runner = GroupRunner(engine, vectors, clock, resolved is not None)
        self._shared = _Shared(engine, resolved, vectors, clock, max_item_bytes, runner)
        with contextlib.suppress(RuntimeError):
            self._shared.loop = asyncio.get_running_loop()

    def scoped(self, owner: str) -> SQLStore:
        """The same store as tenant `owner` sees it: only that tenant's items."""
        if not isinstance(owner, str) or not 0 < len(owner) <= MAX_OWNER_CHARS or "\x00" in owner:
            raise ValueError(
                f"a store tenant (owner) is a non-empty string of at most {MAX_OWNER_CHARS} characters"
            )
        view = copy.copy(self)
        view.owner = owner
        return view

    def _settings(self) -> execute.Settings:
        omit = bool(self.ttl_config and self.ttl_config.get("omit_expired"))
        return execute.Settings(self.owner, self._shared.max_item_bytes, omit)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        shared = self._shared
        if shared.loop is None:
            shared.loop = asyncio.get_running_loop()
        settings = self._settings()
        batch = execute.plan(list(ops), settings, shared.index)
        if shared.index is not None:
            embeddings = shared.index.embeddings
            texts = execute.texts(batch)
            if texts:
                execute.attach_vectors(batch, shared.index, await embeddings.aembed_documents(texts))
            queries = list(batch.queries)
            vectors = await asyncio.gather(*(embeddings.aembed_query(q) for q in queries))
            embedding.check_vectors(shared.index, vectors, len(queries))
            batch.queries = dict(zip(queries, vectors, strict=True))
        return await shared.runner.submit(batch)

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        return self._blocking(self.abatch(list(ops)))

    def _blocking(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._shared.loop
        try:
            on_loop = loop is not None and asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if loop is None or on_loop:
            coro.close()
            raise asyncio.InvalidStateError(
                "SQLStore's sync methods run its async ones on the event loop it serves: call them "
                "from another thread (a sync node's worker thread), or use the a* methods on the loop"
            )
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    # TTL sweeping: one sweeper per store, over every tenant.

    async def asweep_ttl(self) -> int:
        """Delete the items (of every tenant) whose time to live has run out; how many went."""
        shared = self._shared
        now = shared.clock()
        async with shared.engine.begin() as conn:
            await shared.vector_index.drop_expired(conn, now)
            deleted = await sql.sweep(conn, now)
        shared.sweeps += 1
        return deleted

    def sweep_ttl(self) -> int:
        return self._blocking(self.asweep_ttl())

    def sweep_interval_seconds(self) -> float:
        minutes = (self.ttl_config or {}).get("sweep_interval_minutes") or DEFAULT_SWEEP_MINUTES
        return float(minutes) * 60.0

    def start_ttl_sweeper(self, interval_seconds: float | None = None) -> None:
        """Start deleting expired items in the background, on the running loop (idempotent)."""
        shared = self._shared
        if shared.sweeper is not None and not shared.sweeper.done():
            return
        shared.loop = asyncio.get_running_loop()
        every = self.sweep_interval_seconds() if interval_seconds is None else interval_seconds
        shared.sweeper = asyncio.create_task(self._sweep_forever(every), name="store-ttl-sweeper")

    async def stop_ttl_sweeper(self) -> None:
        task, self._shared.sweeper = self._shared.sweeper, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _sweep_forever(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                deleted = await self.asweep_ttl()
            except Exception:
                log.exception("store TTL sweep failed; retrying next interval")
            else:
                if deleted:
                    log.info("store TTL sweep deleted %d expired items", deleted)
