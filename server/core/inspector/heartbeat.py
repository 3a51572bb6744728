"""Each replica's heartbeat row: who it is, since when, whether it drains, what it holds.

The row is rewritten every `interval` seconds; a replica whose row is older than
MISSED_BEATS of its own intervals is shown as not alive (it died, or stopped). Rows silent for
long are removed by the beats of the replicas still running, so names of old processes
(`<host>-<pid>`) do not pile up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from stepstream.server.core.inspector.model import InspectorStore, ReplicaBeat

log = logging.getLogger(__name__)

# Beats a replica may miss before it is shown as not alive.
MISSED_BEATS = 3
# A row is forgotten once silent this long (or 100 of its intervals, if that is longer).
FORGET_AFTER_SECONDS = 3600.0


def alive(beat: ReplicaBeat, now: float) -> bool:
    return now - beat.heartbeat_at <= beat.interval_s * MISSED_BEATS


class Heartbeat:
    def __init__(
        self,
        store: InspectorStore,
        name: str,
        interval: float,
        graphs: Callable[[], tuple[str, ...]],
        running: Callable[[], int],
        leases: Callable[[], int],
        draining: Callable[[], bool],
    ) -> None:
        self._store = store
        self._name = name
        self._interval = interval
        self._graphs = graphs
        self._running = running
        self._leases = leases
        self._draining = draining
        self._started_at = time.time()
        self._task: asyncio.Task[None] | None = None

    def _beat(self, draining: bool) -> ReplicaBeat:
        return ReplicaBeat(
            name=self._name,
            started_at=self._started_at,
            heartbeat_at=time.time(),
            interval_s=self._interval,
            draining=draining,
            running=self._running(),
            leases=self._leases(),
            graphs=self._graphs(),
        )

    async def beat_once(self, draining: bool = False) -> None:
        beat = self._beat(draining or self._draining())
        forget = beat.heartbeat_at - max(FORGET_AFTER_SECONDS, 100 * self._interval)
        await self._store.beat(beat, forget)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="replica-heartbeat")

    async def _loop(self) -> None:
        while True:
            try:
                await self.beat_once()
            except Exception as exc:
                log.warning("cannot write this replica's heartbeat: %s", exc)
            await asyncio.sleep(self._interval)

    async def stop(self) -> None:
        """Stop beating; the last beat says the replica drains (it is gone once it is stale)."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        try:
            await self.beat_once(draining=True)
        except Exception as exc:
            log.warning("cannot write this replica's last heartbeat: %s", exc)
