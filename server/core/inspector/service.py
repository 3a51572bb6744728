"""The inspector as the doors call it: one per replica, built by the core."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from stepstream.server.core.inspector.heartbeat import Heartbeat
from stepstream.server.core.inspector.model import InspectorStore, Overview
from stepstream.server.core.inspector.overview import OverviewHub


class Inspector:
    def __init__(
        self,
        store: InspectorStore,
        replica: str,
        heartbeat_seconds: float,
        graphs: Callable[[], tuple[str, ...]],
        running: Callable[[], int],
        leases: Callable[[], int],
        draining: Callable[[], bool],
    ) -> None:
        self.replica = replica
        self.heartbeat = Heartbeat(store, replica, heartbeat_seconds, graphs, running, leases, draining)
        self.overviews = OverviewHub(store.overview_rows)

    async def start(self) -> None:
        # The first beat before serving: a replica is listed as soon as it answers.
        await self.heartbeat.beat_once()
        self.heartbeat.start()

    async def stop(self) -> None:
        await self.overviews.close()
        await self.heartbeat.stop()

    async def overview(self, owner: str) -> Overview:
        return await self.overviews.current(owner)

    def watch_overview(self, owner: str) -> AsyncIterator[Overview]:
        return self.overviews.watch(owner)
