"""The live overview: one read of the database per tick, shared by every subscriber.

Many browsers watching must not multiply queries: one producer task per process reads the
database about once a second while anybody watches (and not at all otherwise), and each
subscriber gets the latest overview of its own tenant, built once per tick and tenant. A slow
subscriber skips ticks (it holds only the newest), it never makes the producer wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from stepstream.server.core import records as rec
from stepstream.server.core.inspector.heartbeat import alive
from stepstream.server.core.inspector.model import (
    GraphLoad,
    Overview,
    OverviewRows,
    ReplicaView,
    RunError,
)

log = logging.getLogger(__name__)

# Seconds between two reads of the database while anybody watches.
PERIOD_SECONDS = 1.0
# Failed runs shown per tenant; read for all tenants at once, so more are read.
ERRORS_SHOWN = 20
FAILURES_READ = 500
# Seconds the window of runs_per_second spans.
RATE_WINDOW = 10.0


def build(rows: OverviewRows, owner: str, tick: int = 0) -> Overview:
    """The overview as `owner` sees it: every replica, and the owner's runs only."""
    graphs: dict[str, dict[str, int]] = {}

    def load(graph_id: str) -> dict[str, int]:
        return graphs.setdefault(graph_id, {"running": 0, "queued": 0, "finished": 0, "errors": 0})

    recent = 0
    for count in rows.active:
        if count.owner == owner:
            key = "running" if count.status == rec.RunStatus.RUNNING else "queued"
            load(count.graph_id)[key] += count.count
    for count in rows.ended:
        if count.owner == owner:
            entry = load(count.graph_id)
            entry["finished"] += count.count
            if count.status == rec.RunStatus.FAILED:
                entry["errors"] += count.count
            recent += count.recent
    queued_by_graph = {g: v["queued"] for g, v in graphs.items()}
    replicas = tuple(
        ReplicaView(
            name=beat.name,
            started_at=beat.started_at,
            heartbeat_at=beat.heartbeat_at,
            alive=alive(beat, rows.at),
            draining=beat.draining,
            running=beat.running,
            queued=sum(queued_by_graph.get(g, 0) for g in beat.graphs),
            leases=beat.leases,
        )
        for beat in rows.replicas
    )
    loads = sorted(
        (GraphLoad(g, v["running"], v["queued"], v["finished"], v["errors"]) for g, v in graphs.items()),
        key=lambda g: (-(g.running + g.queued), -g.finished_last_minute, g.graph_id),
    )
    errors = tuple(
        RunError(f.run_id, f.session_id, f.graph_id, f.error, f.at) for f in rows.failed if f.owner == owner
    )[:ERRORS_SHOWN]
    return Overview(
        at=rows.at,
        runs_per_second=recent / RATE_WINDOW,
        queued=sum(g.queued for g in loads),
        running=sum(g.running for g in loads),
        replicas=replicas,
        graphs=tuple(loads),
        errors=errors,
        tick=tick,
    )


class OverviewHub:
    """The one producer of overviews in this process, and its subscribers."""

    def __init__(self, read: Callable[[float, int], Awaitable[OverviewRows]], period: float = PERIOD_SECONDS):
        self._read = read
        self._period = period
        self._subscribers: dict[asyncio.Queue[Overview], str] = {}
        self._producer: asyncio.Task[None] | None = None
        self._latest: OverviewRows | None = None
        self._tick = 0
        self._built: dict[str, Overview] = {}
        self._reading: asyncio.Future[OverviewRows] | None = None
        # Database reads made (the bench and tests check that watchers share them).
        self.reads = 0

    @property
    def watchers(self) -> int:
        return len(self._subscribers)

    async def _rows(self) -> OverviewRows:
        """A fresh read; concurrent callers share one, and a caller that goes away cancels none."""
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._read_and_keep())
        return await asyncio.shield(self._reading)

    async def _read_and_keep(self) -> OverviewRows:
        try:
            rows = await self._read(time.time(), FAILURES_READ)
        finally:
            self._reading = None
        self.reads += 1
        self._latest, self._tick, self._built = rows, self._tick + 1, {}
        return rows

    def _for(self, owner: str) -> Overview:
        assert self._latest is not None
        built = self._built.get(owner)
        if built is None:
            built = self._built[owner] = build(self._latest, owner, self._tick)
        return built

    async def current(self, owner: str) -> Overview:
        """The owner's overview: the producer's latest if it is fresh, else a new read."""
        latest = self._latest
        if latest is None or time.time() - latest.at > self._period:
            await self._rows()
        return self._for(owner)

    async def watch(self, owner: str) -> AsyncIterator[Overview]:
        """The owner's overview about once per period, until the caller stops iterating."""
        queue: asyncio.Queue[Overview] = asyncio.Queue(maxsize=1)
        self._subscribers[queue] = owner
        if self._producer is None or self._producer.done():
            self._producer = asyncio.create_task(self._produce(), name="inspector-overview")
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.pop(queue, None)

    async def _produce(self) -> None:
        while self._subscribers:
            started = time.monotonic()
            try:
                await self._rows()
            except Exception as exc:
                log.warning("cannot read the inspector's overview: %s", exc)
            else:
                for queue, owner in list(self._subscribers.items()):
                    if queue.full():
                        queue.get_nowait()  # the subscriber is behind: it gets the newest only
                    queue.put_nowait(self._for(owner))
            await asyncio.sleep(max(0.0, self._period - (time.monotonic() - started)))
        self._producer = None

    async def close(self) -> None:
        if self._producer is not None:
            self._producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._producer
