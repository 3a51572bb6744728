"""The overview hub (core/inspector/overview.py) on a real SQLite database: watchers share one
read per tick, each gets its own tenant's view, a watcher that goes away stops the reads, and a
one-off overview reuses a fresh read."""

from __future__ import annotations

import asyncio
import pathlib

from stepstream.server.core.inspector.model import OverviewRows, ReplicaBeat
from stepstream.server.core.inspector.overview import OverviewHub, build
from stepstream.server.storage.batch import GroupCommitWriter
from stepstream.server.storage.db import create_engine, upgrade_async
from stepstream.server.storage.inspector import InspectorStore
from stepstream.server.storage.reads import Reader


async def test_watchers_share_reads_and_stop_them_when_gone(tmp_path: pathlib.Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    await upgrade_async(url)
    engine = create_engine(url)
    writer, reader = GroupCommitWriter(engine), Reader(engine)
    writer.start()
    store = InspectorStore(writer, reader)
    await store.beat(ReplicaBeat("r1", 1.0, 2.0, 0.5, False, 0, 0, ("g",)), 0.0)
    hub = OverviewHub(store.overview_rows, period=0.02)
    owners = ["alice", "alice", "alice", "bob", "bob"]

    async def watch(owner: str) -> list[int]:
        ticks = []
        async for overview in hub.watch(owner):
            assert [r.name for r in overview.replicas] == ["r1"]
            ticks.append(overview.tick)
            if len(ticks) == 4:
                return ticks
        raise AssertionError("the watch ended")

    try:
        got = await asyncio.gather(*(watch(o) for o in owners))
        # Each tick is one read for all five watchers.
        assert hub.reads < sum(len(t) for t in got)
        assert all(t == sorted(set(t)) for t in got)
        assert hub.watchers == 0
        await asyncio.sleep(0.1)
        reads = hub.reads
        await asyncio.sleep(0.1)
        assert hub.reads == reads  # nobody watches: no reads
        first = await hub.current("alice")
        assert (await hub.current("alice")).tick in (first.tick, first.tick + 1)
    finally:
        await hub.close()
        await writer.close()
        await reader.close()
        await engine.dispose()


def test_build_scopes_runs_to_the_tenant_and_judges_replicas_by_their_beats() -> None:
    from stepstream.server.core.inspector.model import FailedRun, RunCount

    rows = OverviewRows(
        at=100.0,
        replicas=[
            ReplicaBeat("live", 0.0, 99.0, 2.0, False, 3, 3, ("a", "b")),
            ReplicaBeat("dead", 0.0, 90.0, 2.0, False, 1, 1, ("a",)),
        ],
        active=[
            RunCount("alice", "a", "queued", 4),
            RunCount("alice", "b", "running", 2),
            RunCount("bob", "a", "queued", 9),
        ],
        ended=[RunCount("alice", "a", "succeeded", 5, 2), RunCount("alice", "b", "failed", 1, 1)],
        failed=[
            FailedRun("bob", "x", "s", "a", "E: no", 99.0),
            FailedRun("alice", "y", "t", "b", "E: yes", 98.0),
        ],
    )
    overview = build(rows, "alice")
    assert [(r.name, r.alive, r.queued) for r in overview.replicas] == [("live", True, 4), ("dead", False, 4)]
    assert [
        (g.graph_id, g.running, g.queued, g.finished_last_minute, g.errors_last_minute)
        for g in overview.graphs
    ] == [
        ("a", 0, 4, 5, 0),
        ("b", 2, 0, 1, 1),
    ]
    assert (overview.queued, overview.running, overview.runs_per_second) == (4, 2, 0.3)
    assert [e.run_id for e in overview.errors] == ["y"]
