"""Storage grows with the channels a superstep changed, not with the whole state."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypedDict

import pytest
import sqlalchemy as sa
from langgraph.graph import END, START, StateGraph

from stepstream.server.storage.checkpoint_tables import checkpoint_blobs, checkpoint_writes, checkpoints
from stepstream.server.storage.checkpointer import SQLAlchemyCheckpointSaver

pytestmark = pytest.mark.process

SaverFactory = Callable[[], AbstractAsyncContextManager[SQLAlchemyCheckpointSaver]]

BIG = "x" * 200_000


class State(TypedDict, total=False):
    big: str
    small: dict[str, Any]
    n: int
    target: int


async def step(state: State) -> State:
    n = state["n"] + 1
    return {"n": n, "small": {"n": n, "note": f"superstep {n}"}}


def again(state: State) -> str:
    return "step" if state["n"] < state["target"] else END


def build() -> StateGraph[State]:
    graph = StateGraph(State)
    graph.add_node("step", step)
    graph.add_edge(START, "step")
    graph.add_conditional_edges("step", again, ["step", END])
    return graph


async def stored_bytes(saver: SQLAlchemyCheckpointSaver) -> int:
    length = sa.func.length
    async with saver.engine.connect() as conn:
        total = 0
        for stmt in (
            sa.select(sa.func.sum(length(checkpoints.c.checkpoint) + length(checkpoints.c.metadata))),
            sa.select(sa.func.sum(length(checkpoint_blobs.c.blob))),
            sa.select(sa.func.sum(length(checkpoint_writes.c.blob))),
        ):
            total += (await conn.execute(stmt)).scalar_one() or 0
        return total


async def test_unchanged_large_channel_is_stored_once(make_saver: SaverFactory) -> None:
    async with make_saver() as saver:
        app = build().compile(checkpointer=saver)
        cfg: Any = {"configurable": {"thread_id": "growth"}, "recursion_limit": 500}
        await app.ainvoke({"big": BIG, "n": 0, "target": 10}, cfg)
        after_10 = await stored_bytes(saver)
        out = await app.ainvoke({"target": 100}, cfg)
        after_100 = await stored_bytes(saver)

        assert out["n"] == 100 and out["big"] == BIG
        growth = after_100 - after_10
        print(f"stored after 10 supersteps: {after_10} B, after 100: {after_100} B, growth {growth} B")
        # A saver that stores the whole state per superstep would add 90 copies of the large
        # channel here; this one adds less than one: the small channel, pending writes and
        # LangGraph's per-checkpoint bookkeeping (channel versions, versions seen, metadata).
        assert growth < len(BIG) / 2
        assert growth / 90 < len(BIG) / 100
        async with saver.engine.connect() as conn:
            big_rows = await conn.execute(
                sa.select(sa.func.count()).where(checkpoint_blobs.c.channel == "big")
            )
            assert big_rows.scalar_one() == 1
        state = await app.aget_state(cfg)
        assert state.values["big"] == BIG and state.values["small"]["n"] == 100
