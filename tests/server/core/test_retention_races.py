"""Retention never touches a session with an active run, nor one a run is starting on."""

from __future__ import annotations

import json
import pathlib

import pytest

from stepstream.server.core import events as ev
from stepstream.server.core.app import Core
from stepstream.server.core.start import StartRunRequest
from stepstream.server.settings import ServerSettings
from tests.support import GRAPHS_CONFIG

OWNER = "local"


async def _supersteps(core: Core, run_id: str, count: int) -> None:
    seen = 0
    async for batch in core.eventlog.follow(run_id, 0, ev.EventFilter()):
        seen += sum(1 for e in batch if e.kind == ev.SUPERSTEP_FINISHED and not e.namespace)
        if seen >= count:
            return


@pytest.mark.parametrize("prune", [False, True], ids=["no-retention", "retention-pass-during-run"])
async def test_rollback_restores_the_state_before_the_run(tmp_path: pathlib.Path, prune: bool) -> None:
    settings = ServerSettings(
        db_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        config_path=str(GRAPHS_CONFIG),
        keep_checkpoints=2,
        retention_interval_seconds=3600,
    )
    core = Core(settings)
    await core.start()
    try:
        first = await core.start_run(
            StartRunRequest(owner=OWNER, graph_id="slow", input_json='{"steps": 2, "delay": 0}')
        )
        first = await core.runs.wait(OWNER, first.run_id, None)
        session_id = first.session_id
        before = json.loads((await core.sessions.state(OWNER, session_id, ""))["values_json"])
        assert before["done"] == [0, 1]

        second = await core.start_run(
            StartRunRequest(owner=OWNER, session_id=session_id, input_json='{"steps": 10000, "delay": 0.01}')
        )
        await _supersteps(core, second.run_id, 4)
        if prune:
            await core.retain_once()  # what the background retention task does every interval
        await core.runs.cancel(OWNER, second.run_id, rollback=True)

        after = json.loads((await core.sessions.state(OWNER, session_id, ""))["values_json"] or "null")
        assert after == before, "the rollback dropped the session's state from before the run"
    finally:
        await core.stop(grace=0)


async def test_ttl_pass_never_deletes_a_session_a_run_was_just_started_on(tmp_path: pathlib.Path) -> None:
    """A start racing a TTL pass is either refused (NOT_FOUND) or keeps its session and run. 20 tries."""
    import asyncio
    import time

    import sqlalchemy as sa

    from stepstream.server.storage.schema import runs, sessions

    core = Core(
        ServerSettings(
            db_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
            config_path=str(GRAPHS_CONFIG),
            session_ttl_seconds=600,
            retention_interval_seconds=3600,
        )
    )
    await core.start()
    broken = []
    try:
        for _ in range(20):
            old = await core.start_run(
                StartRunRequest(owner=OWNER, graph_id="slow", input_json='{"steps": 1, "delay": 0}')
            )
            old = await core.runs.wait(OWNER, old.run_id, None)
            async with core.engine.begin() as conn:
                await conn.execute(
                    sessions.update()
                    .where(sessions.c.session_id == old.session_id)
                    .values(updated_at=time.time() - 3600)
                )
            _, started = await asyncio.gather(
                core.retain_once(),
                core.start_run(
                    StartRunRequest(
                        owner=OWNER, session_id=old.session_id, input_json='{"steps": 3, "delay": 0.05}'
                    )
                ),
                return_exceptions=True,
            )
            if isinstance(started, BaseException):
                continue  # refused (e.g. NotFound): a consistent outcome
            await core.runs.wait(OWNER, started.run_id, None)
            async with core.engine.connect() as conn:
                session_row = (
                    await conn.execute(sa.select(sessions).where(sessions.c.session_id == old.session_id))
                ).first()
                run_row = (await conn.execute(sa.select(runs).where(runs.c.run_id == started.run_id))).first()
            if session_row is None or run_row is None:
                broken.append((session_row is not None, run_row is not None))
    finally:
        await core.stop(grace=0)
    assert not broken, f"accepted runs whose session or run row retention deleted: {broken}"
