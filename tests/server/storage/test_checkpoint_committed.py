"""The saver tells when a checkpoint's write has committed, even if the put has not started yet."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint

from stepstream.server.storage.checkpointer import SQLAlchemyCheckpointSaver
from stepstream.server.storage.db import create_engine, upgrade_async


@pytest.fixture
async def saver(tmp_path: pathlib.Path) -> AsyncIterator[SQLAlchemyCheckpointSaver]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    await upgrade_async(url)
    engine = create_engine(url)
    saver = SQLAlchemyCheckpointSaver(engine)
    yield saver
    await saver.aclose()
    await engine.dispose()


def _commit_we_settle(saver: SQLAlchemyCheckpointSaver) -> asyncio.Future[None]:
    """The writer hands out one commit that the test settles (as a database would), until `del`."""
    commit: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    saver.writer.submit = lambda writes, after=(): commit  # type: ignore[method-assign]
    return commit


async def _deferred_input_put(
    saver: SQLAlchemyCheckpointSaver, checkpoint: Any
) -> list[asyncio.Future[None]]:
    config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    with saver.deferred_commits() as commits:
        await saver.aput(config, checkpoint, {"source": "input", "step": -1, "parents": {}}, {})
    return commits


async def test_waits_for_a_put_that_starts_later(saver: SQLAlchemyCheckpointSaver) -> None:
    checkpoint = empty_checkpoint()
    config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    waiting = asyncio.create_task(saver.checkpoint_committed(checkpoint["id"], timeout=10))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # nothing written yet
    await saver.aput(config, checkpoint, {"source": "input", "step": -1, "parents": {}}, {})
    assert await waiting
    assert await saver.aget_tuple({"configurable": {"thread_id": "t", "checkpoint_id": checkpoint["id"]}})
    # Asked after the commit: answered at once.
    assert await saver.checkpoint_committed(checkpoint["id"], timeout=0.01)
    # Never written: gives up after the timeout.
    assert not await saver.checkpoint_committed("no-such-checkpoint", timeout=0.05)


async def test_a_new_threads_first_read_finds_nothing_without_a_query(
    saver: SQLAlchemyCheckpointSaver,
) -> None:
    latest = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    checkpoint = empty_checkpoint()
    await saver.aput(latest, checkpoint, {"source": "input", "step": -1, "parents": {}}, {})
    reads: list[object] = []
    saver.reader.run = lambda fn: reads.append(fn) or asyncio.sleep(0, None)  # type: ignore[method-assign]
    with saver.new_thread("t"):
        # Answered "none" from what the caller declared, not from the database.
        assert await saver.aget_tuple(latest) is None
        assert reads == []
        # Only the first read of the thread's latest checkpoint: the next ones ask.
        await saver.aget_tuple(latest)
        assert len(reads) == 1
    del saver.reader.run
    # Outside, the stored checkpoint is read as ever.
    found = await saver.aget_tuple(latest)
    assert found is not None and found.checkpoint["id"] == checkpoint["id"]


async def test_deferred_saves_return_queued_and_report_their_commit(saver: SQLAlchemyCheckpointSaver) -> None:
    config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    metadata = {"source": "input", "step": -1, "parents": {}}
    checkpoint = empty_checkpoint()
    with saver.deferred_commits() as commits:
        saved = await saver.aput(config, checkpoint, metadata, {})
        await saver.aput_writes(saved, [("x", 1)], task_id="task")
        assert len(commits) == 2  # both queued, neither awaited by the saves themselves
        # A read in the same context waits for the context's own saves.
        found = await saver.aget_tuple(config)
        assert found is not None and found.checkpoint["id"] == checkpoint["id"]
        assert found.pending_writes == [("task", "x", 1)]
    await asyncio.gather(*commits)
    assert await saver.checkpoint_committed(checkpoint["id"], timeout=0.01)
    # Outside the context a save returns at its commit, as before.
    later = empty_checkpoint()
    await saver.aput(config, later, {**metadata, "step": 0}, {})
    assert await saver.checkpoint_committed(later["id"], timeout=0.01)


async def test_a_failed_deferred_save_fails_whoever_waits_for_its_checkpoint(
    saver: SQLAlchemyCheckpointSaver,
) -> None:
    checkpoint = empty_checkpoint()
    # The commit of this save is ours to settle: it fails, as a lost database would make it.
    commit = _commit_we_settle(saver)
    waiting = asyncio.create_task(saver.checkpoint_committed(checkpoint["id"], timeout=10))
    commits = await _deferred_input_put(saver, checkpoint)
    assert commits == [commit] and not waiting.done()
    commit.set_exception(OSError("database is gone"))
    with pytest.raises(OSError, match="database is gone"):
        await waiting
    del saver.writer.submit


async def test_a_save_whose_caller_was_cancelled_still_commits_and_says_so(
    saver: SQLAlchemyCheckpointSaver,
) -> None:
    config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    checkpoint = empty_checkpoint()
    put = asyncio.create_task(
        saver.aput(config, checkpoint, {"source": "input", "step": -1, "parents": {}}, {})
    )
    await asyncio.sleep(0)  # the writes are queued ...
    put.cancel()  # ... and the caller stops waiting for them
    with pytest.raises(asyncio.CancelledError):
        await put
    # The writes were not taken back: they commit, and the saver knows it without asking the database.
    assert await saver.checkpoint_committed(checkpoint["id"], timeout=5)
    assert await saver.aget_tuple(config) is not None


async def test_a_queued_save_is_handed_out_before_it_commits_and_forgotten_after(
    saver: SQLAlchemyCheckpointSaver,
) -> None:
    checkpoint = empty_checkpoint()
    commit = _commit_we_settle(saver)
    asked = asyncio.create_task(saver.checkpoint_save(checkpoint["id"], timeout=10))
    await asyncio.sleep(0.01)
    assert not asked.done()  # nothing queued yet
    await _deferred_input_put(saver, checkpoint)
    # Queued, not committed: what reports the checkpoint may now be written after it.
    assert await asked is commit and not commit.done()
    assert await saver.checkpoint_save(checkpoint["id"]) is commit
    commit.set_result(None)
    await asyncio.sleep(0)
    assert await saver.checkpoint_save(checkpoint["id"]) is None  # committed: nothing to wait for
    del saver.writer.submit
    with pytest.raises(TimeoutError):
        await saver.checkpoint_save("no-such-checkpoint", timeout=0.05)


async def test_a_failed_save_is_still_handed_out_so_what_depends_on_it_fails(
    saver: SQLAlchemyCheckpointSaver,
) -> None:
    checkpoint = empty_checkpoint()
    commit = _commit_we_settle(saver)
    await _deferred_input_put(saver, checkpoint)
    commit.set_exception(OSError("database is gone"))
    await asyncio.sleep(0)
    del saver.writer.submit
    failed = await saver.checkpoint_save(checkpoint["id"], timeout=0.05)
    assert failed is commit
    with pytest.raises(OSError, match="database is gone"):
        await saver.writer.submit([], after=[failed])
