"""The inspector's SQL (storage/inspector.py) on SQLite and PostgreSQL: heartbeat rows are
upserted and old ones forgotten; the overview read counts active runs and runs ended in the
last minute (and 10 s) per tenant and graph, and lists the newest failures first."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import pytest
import sqlalchemy as sa

from stepstream.server.core import records as rec
from stepstream.server.core.inspector.model import ReplicaBeat
from stepstream.server.storage.checkpointer import SQLAlchemyCheckpointSaver
from stepstream.server.storage.inspector import InspectorStore
from stepstream.server.storage.records import Store
from stepstream.server.storage.schema import runs as runs_table

pytestmark = pytest.mark.process

SaverFactory = Callable[[], AbstractAsyncContextManager[SQLAlchemyCheckpointSaver]]
NOW = 1_000_000.0


@pytest.fixture
async def stores(
    make_saver: SaverFactory,
) -> AsyncIterator[tuple[Store, InspectorStore, SQLAlchemyCheckpointSaver]]:
    async with make_saver() as saver:
        store = Store(saver.engine)
        try:
            yield store, InspectorStore(saver.writer, store.reader), saver
        finally:
            await store.aclose()


def _beat(name: str, at: float, running: int = 0, draining: bool = False) -> ReplicaBeat:
    return ReplicaBeat(name, NOW - 100, at, 2.0, draining, running, running, ("slow", "boom"))


async def test_beats_upsert_and_forget_the_long_silent(
    stores: tuple[Store, InspectorStore, SQLAlchemyCheckpointSaver],
) -> None:
    _, inspector, _ = stores
    await inspector.beat(_beat("old", NOW - 7200), forget_before=0)
    await inspector.beat(_beat("a", NOW - 5, running=1), forget_before=NOW - 3600)
    await inspector.beat(_beat("a", NOW, running=4, draining=True), forget_before=NOW - 3600)
    rows = await inspector.overview_rows(NOW, 10)
    assert [r.name for r in rows.replicas] == ["a"]
    (a,) = rows.replicas
    assert (a.heartbeat_at, a.running, a.leases, a.draining, a.graphs) == (NOW, 4, 4, True, ("slow", "boom"))


def _run(run_id: str, owner: str, graph: str, status: rec.RunStatus, ended_ago: float | None) -> rec.Run:
    ended = None if ended_ago is None else NOW - ended_ago
    return rec.Run(
        run_id,
        owner,
        f"s-{run_id}",
        graph,
        status,
        rec.RunOptions(),
        created_at=NOW - 300,
        ended_at=ended,
        error_type="ValueError" if status is rec.RunStatus.FAILED else "",
        error_message=f"bad {run_id}" if status is rec.RunStatus.FAILED else "",
    )


async def test_overview_rows_count_per_tenant_and_graph(
    stores: tuple[Store, InspectorStore, SQLAlchemyCheckpointSaver],
) -> None:
    store, inspector, saver = stores
    S = rec.RunStatus
    runs = [
        _run("q1", "alice", "slow", S.QUEUED, None),
        _run("q2", "alice", "slow", S.QUEUED, None),
        _run("r1", "alice", "slow", S.RUNNING, None),
        _run("r2", "bob", "slow", S.RUNNING, None),
        _run("d1", "alice", "slow", S.SUCCEEDED, 5),
        _run("d2", "alice", "slow", S.SUCCEEDED, 30),
        _run("d3", "alice", "slow", S.SUCCEEDED, 3600),
        _run("f1", "alice", "boom", S.FAILED, 2),
        _run("f2", "alice", "boom", S.FAILED, 7200),
        _run("f3", "bob", "boom", S.FAILED, 1),
    ]
    await saver.writer.write([store.insert_run(run, None, None) for run in runs])
    # How runs end (run_ended) is fenced by their holder; these have none, so set it directly.
    async with saver.engine.begin() as conn:
        for run in runs:
            if run.ended_at is not None:
                await conn.execute(
                    sa.update(runs_table)
                    .where(runs_table.c.run_id == run.run_id)
                    .values(
                        ended_at=run.ended_at,
                        error_type=run.error_type or None,
                        error_message=run.error_message or None,
                    )
                )
    rows = await inspector.overview_rows(NOW, 10)
    active = {(c.owner, c.graph_id, c.status): c.count for c in rows.active}
    assert active == {
        ("alice", "slow", "queued"): 2,
        ("alice", "slow", "running"): 1,
        ("bob", "slow", "running"): 1,
    }
    ended = {(c.owner, c.graph_id, c.status): (c.count, c.recent) for c in rows.ended}
    assert ended == {
        ("alice", "slow", "succeeded"): (2, 1),
        ("alice", "boom", "failed"): (1, 1),
        ("bob", "boom", "failed"): (1, 1),
    }
    assert [f.run_id for f in rows.failed] == ["f3", "f1", "f2"]
    assert rows.failed[1].error == "ValueError: bad f1" and rows.failed[1].session_id == "s-f1"
    assert [f.run_id for f in (await inspector.overview_rows(NOW, 2)).failed] == ["f3", "f1"]
