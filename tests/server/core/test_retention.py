"""Retention on a real Core (SQLite file, the test graphs): session TTL and keep-latest-N checkpoints.

Time is not waited for: a session is made "idle for an hour" by moving its
updated_at back in the database, and the retention pass is called directly
(`Core.retain_once`), except in the one test that checks the background task.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver

from stepstream.server.core import events as ev
from stepstream.server.core import records as rec
from stepstream.server.core.app import Core
from stepstream.server.core.errors import NotFound
from stepstream.server.core.start import CommandRequest, StartRunRequest
from stepstream.server.settings import ServerSettings
from stepstream.server.storage.checkpoint_tables import checkpoint_blobs, checkpoint_writes, checkpoints
from stepstream.server.storage.schema import run_events, runs, sessions
from tests.support import GRAPHS_CONFIG

OWNER = "local"
TTL = 600.0
KEEP = 2


def _settings(tmp_path: pathlib.Path, **overrides: Any) -> ServerSettings:
    values: dict[str, Any] = {
        "db_url": f"sqlite+aiosqlite:///{tmp_path / 'retention.db'}",
        "config_path": str(GRAPHS_CONFIG),
        "session_ttl_seconds": TTL,
        "keep_checkpoints": KEEP,
        # The background pass stays out of the way; tests call retain_once themselves.
        "retention_interval_seconds": 3600.0,
        "replica": "retention-test",
        **overrides,
    }
    return ServerSettings(**values)


@pytest.fixture
async def core(tmp_path: pathlib.Path) -> AsyncIterator[Core]:
    app = Core(_settings(tmp_path))
    await app.start()
    try:
        yield app
    finally:
        await app.stop(grace=0)


async def _run(
    core: Core,
    graph_id: str,
    values: Any,
    session_id: str = "",
    command: CommandRequest | None = None,
) -> rec.Run:
    """Start a run and wait for its end."""
    run = await core.start_run(
        StartRunRequest(
            owner=OWNER,
            graph_id=graph_id,
            session_id=session_id,
            input_json=json.dumps(values) if values is not None else "",
            command=command,
        )
    )
    return await core.runs.wait(OWNER, run.run_id, None)


async def _session(core: Core, graph_id: str, values: Any) -> str:
    ended = await _run(core, graph_id, values)
    assert ended.status in (rec.RunStatus.SUCCEEDED, rec.RunStatus.INTERRUPTED), ended
    return ended.session_id


async def _age(core: Core, session_id: str, seconds: float = 3600.0) -> None:
    """Make a session look idle for `seconds` (its last activity moved back)."""
    async with core.engine.begin() as conn:
        result = await conn.execute(
            sessions.update()
            .where(sessions.c.session_id == session_id)
            .values(updated_at=time.time() - seconds)
        )
    assert result.rowcount == 1


async def _rows(core: Core, session_id: str) -> dict[str, int]:
    """Stored rows of one session in each table that holds them."""
    counted = {
        "sessions": (sessions, sessions.c.session_id),
        "runs": (runs, runs.c.session_id),
        "run_events": (run_events, run_events.c.session_id),
        "checkpoints": (checkpoints, checkpoints.c.thread_id),
        "checkpoint_writes": (checkpoint_writes, checkpoint_writes.c.thread_id),
        "checkpoint_blobs": (checkpoint_blobs, checkpoint_blobs.c.thread_id),
    }
    out = {}
    async with core.engine.connect() as conn:
        for name, (table, column) in counted.items():
            stmt = sa.select(sa.func.count()).select_from(table).where(column == session_id)
            out[name] = int((await conn.execute(stmt)).scalar_one())
    return out


async def _checkpoints_per_namespace(core: Core, session_id: str) -> dict[str, list[str]]:
    async with core.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(checkpoints.c.checkpoint_ns, checkpoints.c.checkpoint_id)
            .where(checkpoints.c.thread_id == session_id)
            .order_by(checkpoints.c.checkpoint_ns, checkpoints.c.checkpoint_id)
        )
        out: dict[str, list[str]] = {}
        for ns, cid in rows:
            out.setdefault(ns, []).append(cid)
    return out


async def _writes_refer_to_stored_checkpoints(core: Core, session_id: str) -> None:
    async with core.engine.connect() as conn:
        orphans = (
            await conn.execute(
                sa.select(checkpoint_writes.c.checkpoint_ns, checkpoint_writes.c.checkpoint_id)
                .where(checkpoint_writes.c.thread_id == session_id)
                .except_(
                    sa.select(checkpoints.c.checkpoint_ns, checkpoints.c.checkpoint_id).where(
                        checkpoints.c.thread_id == session_id
                    )
                )
            )
        ).all()
    assert not orphans, f"pending writes of deleted checkpoints remain: {orphans}"


async def _wait_for_supersteps(core: Core, run_id: str, count: int, after_seq: int = 0) -> None:
    """Until `count` more root supersteps of a run have finished (after event `after_seq`)."""
    finished = 0
    async for batch in core.eventlog.follow(run_id, after_seq, ev.EventFilter()):
        finished += sum(1 for e in batch if e.kind == ev.SUPERSTEP_FINISHED and not e.namespace)
        if finished >= count:
            return
    raise AssertionError(f"run {run_id} ended before {count} supersteps")


# -- time to live -------------------------------------------------------------------------------------


async def test_expired_idle_sessions_are_deleted_with_everything_they_hold(core: Core) -> None:
    finished = await _session(core, "linear", {"x": 1})
    waiting = await _session(core, "ask", {"question": "colour?"})  # idle at an interrupt
    nested = await _session(core, "nested", {"x": 1})  # subgraph checkpoints too
    fresh = await _session(core, "linear", {"x": 1})
    for expired in (finished, waiting, nested):
        before = await _rows(core, expired)
        assert all(before[name] > 0 for name in ("sessions", "runs", "run_events", "checkpoints")), before
        await _age(core, expired)
    fresh_before = await _rows(core, fresh)

    await core.retain_once()

    for expired in (finished, waiting, nested):
        assert await _rows(core, expired) == dict.fromkeys(fresh_before, 0), expired
        with pytest.raises(NotFound):
            await core.sessions.get(OWNER, expired)
        with pytest.raises(NotFound):
            await core.start_run(StartRunRequest(owner=OWNER, session_id=expired, input_json='{"x": 1}'))
    # A session used within the TTL keeps everything (pruning aside: it holds more than KEEP).
    after = await _rows(core, fresh)
    assert {k: after[k] for k in ("sessions", "runs", "run_events")} == {
        k: fresh_before[k] for k in ("sessions", "runs", "run_events")
    }
    assert (await core.sessions.get(OWNER, fresh)).status == rec.SessionStatus.IDLE


async def test_a_busy_session_is_kept_however_old(core: Core) -> None:
    run = await core.start_run(
        StartRunRequest(owner=OWNER, graph_id="slow", input_json=json.dumps({"steps": 10_000, "delay": 0.01}))
    )
    await _wait_for_supersteps(core, run.run_id, 3)
    await _age(core, run.session_id)
    before = await _rows(core, run.session_id)

    await core.retain_once()

    after = await _rows(core, run.session_id)
    assert after["sessions"] == 1 and after["runs"] == 1
    assert after["run_events"] >= before["run_events"]
    assert (await core.sessions.get(OWNER, run.session_id)).status == rec.SessionStatus.BUSY
    assert (await core.store.get_run(OWNER, run.run_id)).status == rec.RunStatus.RUNNING

    # It keeps running, and its last checkpoint continues the session once it is stopped.
    await _wait_for_supersteps(core, run.run_id, 2, after_seq=core.eventlog.last_seq(run.run_id))
    cancelled = await core.runs.cancel(OWNER, run.run_id, rollback=False)
    assert cancelled.status == rec.RunStatus.CANCELLED
    done = json.loads((await core.sessions.state(OWNER, run.session_id, ""))["values_json"])["done"]
    assert len(done) >= 5
    again = await _run(core, "slow", {"steps": 0, "delay": 0.0}, run.session_id)
    assert again.status == rec.RunStatus.SUCCEEDED
    assert json.loads(again.values_json)["done"] == [*done, len(done)]


async def test_a_session_that_was_used_again_is_not_expired(core: Core) -> None:
    session_id = await _session(core, "linear", {"x": 1})
    await _age(core, session_id)
    # New activity moves the session's clock forward again.
    await _run(core, "linear", {"x": 5}, session_id)

    await core.retain_once()

    assert (await core.sessions.get(OWNER, session_id)).session_id == session_id
    assert (await _rows(core, session_id))["runs"] == 2


# -- keep the latest N checkpoints ---------------------------------------------------------------------


SEQUENCES: dict[str, list[dict[str, Any]]] = {
    "linear": [{"x": 1}, {"x": 10}, {"x": 100}],
    "nested": [{"x": 1}, {"x": 7}],
    "fanout": [{"n": 4}, {"n": 2}],
}


def _comparable(graph_id: str, values: dict[str, Any]) -> dict[str, Any]:
    if graph_id == "fanout":  # "peak" measures concurrency, which varies
        return {"results": sorted(values["results"]), "total": values["total"]}
    return values


async def test_history_is_pruned_to_n_and_the_latest_state_continues(core: Core) -> None:
    session_ids: dict[str, str] = {}
    for graph_id, inputs in SEQUENCES.items():
        session_ids[graph_id] = await _session(core, graph_id, inputs[0])
        for values in inputs[1:-1]:
            await _run(core, graph_id, values, session_ids[graph_id])
    latest = {g: await core.sessions.state(OWNER, s, "") for g, s in session_ids.items()}
    for s in session_ids.values():
        assert len((await core.sessions.history(OWNER, s, 100, ""))[0]) > KEEP

    await core.retain_once()

    for graph_id, s in session_ids.items():
        per_ns = await _checkpoints_per_namespace(core, s)
        assert per_ns and all(len(ids) <= KEEP for ids in per_ns.values()), per_ns
        history, _ = await core.sessions.history(OWNER, s, 100, "")
        assert len(history) == KEEP
        # The latest state is exactly what it was.
        assert history[0] == latest[graph_id]
        assert await core.sessions.state(OWNER, s, "") == latest[graph_id]
        await _writes_refer_to_stored_checkpoints(core, s)

    # Each session continues from its latest state with a new run, as if nothing had been pruned:
    # the same graph with the same inputs on an in-memory saver is the reference.
    for graph_id, inputs in SEQUENCES.items():
        ended = await _run(core, graph_id, inputs[-1], session_ids[graph_id])
        assert ended.status == rec.RunStatus.SUCCEEDED, ended
        reference = core.registry.get(graph_id).graph.copy(update={"checkpointer": InMemorySaver()})
        thread: RunnableConfig = {"configurable": {"thread_id": "reference"}}
        for values in inputs:
            expected = await reference.ainvoke(values, thread)
        assert _comparable(graph_id, json.loads(ended.values_json)) == _comparable(graph_id, expected)


async def test_a_pending_interrupt_survives_pruning(core: Core) -> None:
    session_id = await _session(core, "ask", {"question": "first?"})
    await _run(core, "ask", None, session_id, CommandRequest(resume_json='"one"'))
    await _run(core, "ask", {"question": "second?"}, session_id)
    state = await core.sessions.state(OWNER, session_id, "")
    assert [json.loads(i["value_json"]) for i in state["interrupts"]] == ["second?"]
    assert len((await core.sessions.history(OWNER, session_id, 100, ""))[0]) > KEEP

    await core.retain_once()

    assert len((await core.sessions.history(OWNER, session_id, 100, ""))[0]) == KEEP
    assert await core.sessions.state(OWNER, session_id, "") == state
    resumed = await _run(core, "ask", None, session_id, CommandRequest(resume_json='"two"'))
    assert resumed.status == rec.RunStatus.SUCCEEDED
    assert json.loads(resumed.values_json) == {"question": "second?", "answer": "two"}


async def test_pruning_again_changes_nothing(core: Core) -> None:
    session_id = await _session(core, "linear", {"x": 1})
    await core.retain_once()
    once = await _rows(core, session_id)
    state = await core.sessions.state(OWNER, session_id, "")

    await core.retain_once()

    assert await _rows(core, session_id) == once
    assert await core.sessions.state(OWNER, session_id, "") == state


# -- in the background ---------------------------------------------------------------------------------


async def test_retention_runs_in_the_background(tmp_path: pathlib.Path) -> None:
    app = Core(_settings(tmp_path, retention_interval_seconds=0.05))
    await app.start()
    try:
        kept = await _session(app, "linear", {"x": 1})
        expired = await _session(app, "linear", {"x": 1})
        await _age(app, expired)
        deadline = time.monotonic() + 60
        while (await _rows(app, expired))["sessions"] or len(
            (await _checkpoints_per_namespace(app, kept))[""]
        ) > KEEP:
            assert time.monotonic() < deadline, "the background pass never ran"
            await asyncio.sleep(0.05)
        assert await _rows(app, expired) == dict.fromkeys(await _rows(app, expired), 0)
        assert json.loads((await app.sessions.state(OWNER, kept, ""))["values_json"])["x"] == 4
    finally:
        await app.stop(grace=0)
