"""The sync API: wrappers that run on the saver's loop, for code on other threads."""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from stepstream.server.storage.checkpointer import SQLAlchemyCheckpointSaver

pytestmark = pytest.mark.process

SaverFactory = Callable[[], AbstractAsyncContextManager[SQLAlchemyCheckpointSaver]]


class State(TypedDict, total=False):
    log: Annotated[list[str], operator.add]


def app_on(saver: SQLAlchemyCheckpointSaver) -> Any:
    graph = StateGraph(State)
    # Plain def nodes: under invoke() LangGraph runs everything on the calling thread.
    graph.add_node("a", lambda s: {"log": ["a"]})
    graph.add_node("b", lambda s: {"log": ["b"]})
    graph.add_edge(START, "a")
    graph.add_edge("a", "b")
    graph.add_edge("b", END)
    return graph.compile(checkpointer=saver)


async def test_sync_graph_calls_from_a_worker_thread(make_saver: SaverFactory) -> None:
    async with make_saver() as saver:
        app = app_on(saver)
        cfg: Any = {"configurable": {"thread_id": "sync"}}

        def in_thread() -> dict[str, Any]:
            out = app.invoke({"log": ["in"]}, cfg)
            history = list(app.get_state_history(cfg))
            after_a = next(s for s in history if s.values.get("log") == ["in", "a"])
            forked = app.update_state(after_a.config, {"log": ["edit"]})
            resumed = app.invoke(None, forked)
            saver.copy_thread("sync", "sync-copy")
            return {
                "out": out["log"],
                "steps": [s.metadata["step"] for s in history],
                "resumed": resumed["log"],
                "latest": saver.get_tuple(cfg),
                "limited": list(saver.list(cfg, limit=2)),
                "copied": app.get_state({"configurable": {"thread_id": "sync-copy"}}).values["log"],
            }

        seen = await asyncio.to_thread(in_thread)
        assert seen["out"] == ["in", "a", "b"]
        assert seen["steps"] == [2, 1, 0, -1]
        assert seen["resumed"] == ["in", "a", "edit", "b"]
        assert seen["latest"].checkpoint["channel_values"]["log"] == ["in", "a", "edit", "b"]
        assert len(seen["limited"]) == 2
        assert seen["copied"] == ["in", "a", "edit", "b"]

        await asyncio.to_thread(saver.prune, ["sync"])
        assert len([t async for t in saver.alist(cfg)]) == 1
        await asyncio.to_thread(saver.delete_thread, "sync")
        assert await saver.aget_tuple(cfg) is None


async def test_sync_call_on_the_loop_thread_is_refused(saver: SQLAlchemyCheckpointSaver) -> None:
    with pytest.raises(asyncio.InvalidStateError):
        saver.get_tuple({"configurable": {"thread_id": "t"}})
