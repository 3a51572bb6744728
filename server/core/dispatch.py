"""The replica's background duties toward the shared run queue.

- Renew the leases of the runs executing here (and learn of cancels asked by
  other replicas, and of runs another replica took over after our lease lapsed).
- Put back in the queue the runs whose replica stopped renewing (it died).
- Claim queued runs while this replica has free slots.
- Act on the database's notifications (PostgreSQL): new events of a run
  followed here, a run queued, a cancel asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from stepstream.server.core.eventlog import EventLog
from stepstream.server.core.ports import NOTIFY_CANCEL, NOTIFY_EVENTS, NOTIFY_QUEUE, Listener, RunQueue
from stepstream.server.core.runs import RunManager
from stepstream.server.settings import ServerSettings

log = logging.getLogger(__name__)

# Runs claimed per query when the queue is long.
CLAIM_BATCH = 100


class Dispatcher:
    def __init__(
        self,
        settings: ServerSettings,
        runs: RunManager,
        eventlog: EventLog,
        queue: RunQueue,
        listen: Callable[[Callable[[str], None]], Listener],
    ) -> None:
        """`listen(on_message)`: the listener that hands other replicas' notifications on."""
        self._settings = settings
        self._runs = runs
        self._eventlog = eventlog
        self._queue = queue
        self._listener = listen(self._on_notification)
        self._listener.on_reconnect = self._on_reconnect
        self._renew_now = asyncio.Event()
        self._strays: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        # Leases this replica held at its last renewal (its heartbeat row shows them).
        self.leases = 0

    async def start(self) -> None:
        replica = self._settings.replica
        # Runs recorded under this replica's name belong to an earlier process of the same name.
        released = await self._queue.release_replica(replica)
        if released:
            log.info("released %d runs an earlier process named %s held", released, replica)
        await self._listener.start()
        self._eventlog.notified = self._listener.enabled
        self._tasks = [
            asyncio.create_task(self._keep_leases(), name="lease-keeper"),
            asyncio.create_task(self._watch_queue(), name="queue-watcher"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._listener.close()

    # -- notifications -----------------------------------------------------------------------
    def _on_notification(self, payload: str) -> None:
        if payload.startswith(NOTIFY_EVENTS):
            self._eventlog.wake(payload[len(NOTIFY_EVENTS) :])
        elif payload.startswith(NOTIFY_QUEUE):
            self._runs.note_queued(payload[len(NOTIFY_QUEUE) :] or None)
        elif (
            payload.startswith(NOTIFY_CANCEL) and payload[len(NOTIFY_CANCEL) :] in self._runs.local_run_ids()
        ):
            self._renew_now.set()

    def _on_reconnect(self) -> None:
        # Whatever was sent while the connection was down: look, rather than wait for the polls.
        self._eventlog.wake_all()
        self._runs.note_queued(None)
        self._renew_now.set()

    # -- loops -------------------------------------------------------------------------------
    async def _keep_leases(self) -> None:
        while True:
            try:
                await self.renew_once()
            except Exception as exc:
                log.warning("cannot renew leases: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._renew_now.wait(), self._settings.lease_renew_seconds)
            self._renew_now.clear()

    async def renew_once(self) -> None:
        held = self._runs.local_run_ids()
        replica, until = self._settings.replica, time.time() + self._settings.lease_seconds
        renewed = await self._queue.renew(replica, until)
        self.leases = len(renewed)
        # Held before the renewal was sent, yet not renewed: ended meanwhile, or taken over.
        missing = held - renewed.keys()
        # Renewed under our name, yet executing nowhere here, twice in a row (a run is renewed
        # between the commit of its start and its launch here; it is local by the next round).
        strays = renewed.keys() - self._runs.local_run_ids()
        orphans, self._strays = strays & self._strays, strays
        if missing or orphans:
            lost = await self._queue.lost_and_orphaned(replica, missing, orphans)
            self._runs.lost(lost)
        for run_id, request in renewed.items():
            if request is not None:
                self._runs.cancel_requested(run_id, request)

    async def _watch_queue(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception as exc:
                log.warning("cannot poll the run queue: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._runs.queue_changed.wait(), self._settings.queue_poll_seconds)
            self._runs.queue_changed.clear()

    async def poll_once(self) -> None:
        replica = self._settings.replica
        requeued = await self._queue.requeue_expired(replica, time.time())
        if requeued:
            log.info("took back %d runs whose replica stopped renewing: %s", len(requeued), requeued)
            self._runs.maybe_queued = True
        while self._runs.free_slots:
            wanted = min(CLAIM_BATCH, self._runs.free_slots)
            if await self._runs.claim(wanted) < wanted:
                self._runs.maybe_queued = False
                return
