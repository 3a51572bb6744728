"""With "async" durability a superstep's events are stored with or after its checkpoint's save,
and the run's end with or after its last saves, never without them: a save that fails takes
down what reports it, and the run ends failed, not finished."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence
from typing import Any

import pytest
import sqlalchemy as sa

from stepstream.server.core import events as ev
from stepstream.server.core import records as rec
from stepstream.server.core.app import Core
from stepstream.server.core.start import StartRunRequest
from stepstream.server.settings import Durability, ServerSettings
from stepstream.server.storage.checkpointer import SQLAlchemyCheckpointSaver
from tests.support import GRAPHS_CONFIG

OWNER = "local"


class FailingStep:
    """Makes the save of one step's checkpoint fail in the database (a statement it rejects)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.step = -100
        self.checkpoint_id = ""
        aput, queued = SQLAlchemyCheckpointSaver.aput, SQLAlchemyCheckpointSaver._queued

        async def failing_aput(saver: Any, config: Any, checkpoint: Any, metadata: Any, versions: Any) -> Any:
            if metadata.get("step") == self.step:
                self.checkpoint_id = checkpoint["id"]
            return await aput(saver, config, checkpoint, metadata, versions)

        async def failing_queued(saver: Any, writes: Sequence[Any], checkpoint_id: str | None = None) -> None:
            if checkpoint_id is not None and checkpoint_id == self.checkpoint_id:
                writes = [*writes, (sa.text("INSERT INTO no_such_table VALUES (1)"), {})]
            await queued(saver, writes, checkpoint_id)

        monkeypatch.setattr(SQLAlchemyCheckpointSaver, "aput", failing_aput)
        monkeypatch.setattr(SQLAlchemyCheckpointSaver, "_queued", failing_queued)


async def _stored_events(core: Core, run_id: str) -> list[ev.RunEvent]:
    rows = await core.store.events_after(run_id, 0, limit=1_000)
    return [ev.RunEvent.from_row(run_id, seq, kind, body) for seq, kind, body in rows]


async def test_a_run_whose_save_fails_ends_failed_and_nothing_reports_that_checkpoint(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = FailingStep(monkeypatch)
    settings = ServerSettings(
        db_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        config_path=str(GRAPHS_CONFIG),
        durability=Durability.ASYNC,
    )
    core = Core(settings)
    await core.start()
    try:
        # Steps 0-2 checkpoint the ticks; the last one's save (the run's last) fails.
        for failing_step in (1, 3):
            failing.step, failing.checkpoint_id = failing_step, ""
            run = await core.start_run(
                StartRunRequest(owner=OWNER, graph_id="slow", input_json='{"steps": 3, "delay": 0}')
            )
            ended = await core.runs.wait(OWNER, run.run_id, None)
            assert ended.status == rec.RunStatus.FAILED, failing_step
            stored = await _stored_events(core, run.run_id)
            kinds = [e.kind for e in stored]
            assert kinds[-1] == ev.RUN_FAILED and ev.RUN_FINISHED not in kinds
            reported = [e.data["checkpoint_id"] for e in stored if e.kind == ev.SUPERSTEP_FINISHED]
            assert failing.checkpoint_id and failing.checkpoint_id not in reported
            # What is reported is what is stored: the session's state is the last reported step's.
            state = await core.sessions.state(OWNER, run.session_id, "")
            assert state["checkpoint_id"] in reported
            assert [e.seq for e in stored] == sorted({e.seq for e in stored})
        # The database itself is fine: the next run succeeds.
        failing.step = -100
        run = await core.start_run(
            StartRunRequest(owner=OWNER, graph_id="slow", input_json='{"steps": 2, "delay": 0}')
        )
        ended = await core.runs.wait(OWNER, run.run_id, None)
        assert ended.status == rec.RunStatus.SUCCEEDED
        assert json.loads(ended.values_json)["done"] == [0, 1]
    finally:
        await core.stop(grace=0)
