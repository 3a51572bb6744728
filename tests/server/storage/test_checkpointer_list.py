"""alist pages through long histories: order, limit, filter and ties across threads."""

from __future__ import annotations

from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.base.id import uuid6

from stepstream.server.storage.checkpoint_reads import LIST_PAGE
from stepstream.server.storage.checkpointer import SQLAlchemyCheckpointSaver

pytestmark = pytest.mark.process

COUNT = 2 * LIST_PAGE + 50


async def fill(saver: SQLAlchemyCheckpointSaver, thread_id: str) -> list[str]:
    parent: Any = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    ids = []
    for step in range(COUNT):
        checkpoint = empty_checkpoint()
        checkpoint["id"] = str(uuid6(clock_seq=step))
        version = saver.get_next_version(None, None)
        checkpoint["channel_values"] = {"items": [step]}
        checkpoint["channel_versions"] = {"items": version}
        parent = await saver.aput(parent, checkpoint, {"source": "loop", "step": step}, {"items": version})
        ids.append(checkpoint["id"])
    return ids


async def test_pages_keep_order_limit_and_filter(saver: SQLAlchemyCheckpointSaver) -> None:
    ids = await fill(saver, "long")
    cfg: Any = {"configurable": {"thread_id": "long"}}
    listed = [t async for t in saver.alist(cfg)]
    assert [t.config["configurable"]["checkpoint_id"] for t in listed] == ids[::-1]
    assert [t.checkpoint["channel_values"]["items"] for t in listed[:2]] == [[COUNT - 1], [COUNT - 2]]

    assert len([t async for t in saver.alist(cfg, limit=LIST_PAGE + 7)]) == LIST_PAGE + 7
    before: Any = {"configurable": {"checkpoint_id": ids[LIST_PAGE + 10]}}
    older = [t.config["configurable"]["checkpoint_id"] async for t in saver.alist(cfg, before=before)]
    assert older == ids[: LIST_PAGE + 10][::-1]

    # The only match sits past the first page.
    matches = [t async for t in saver.alist(cfg, filter={"step": 3}, limit=5)]
    assert [t.metadata["step"] for t in matches] == [3]
    assert len([t async for t in saver.alist(cfg, filter={"source": "loop"})]) == COUNT


async def test_listing_every_thread_walks_equal_ids_once(saver: SQLAlchemyCheckpointSaver) -> None:
    ids = await fill(saver, "a")
    await saver.acopy_thread("a", "b")  # the same checkpoint ids on two threads
    listed = [
        (t.config["configurable"]["checkpoint_id"], t.config["configurable"]["thread_id"])
        async for t in saver.alist(None)
    ]
    assert len(listed) == len(set(listed)) == 2 * COUNT
    assert [cid for cid, _ in listed[::2]] == ids[::-1]
