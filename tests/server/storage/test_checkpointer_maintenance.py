"""Pruning and retention: history goes, what the kept checkpoints need stays."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any, TypedDict

import pytest
import sqlalchemy as sa
from langgraph.channels.delta import DeltaChannel
from langgraph.graph import END, START, StateGraph

from stepstream.server.storage.checkpoint_tables import checkpoint_blobs, checkpoints
from stepstream.server.storage.checkpointer import SQLAlchemyCheckpointSaver

pytestmark = pytest.mark.process

SaverFactory = Callable[[], AbstractAsyncContextManager[SQLAlchemyCheckpointSaver]]


def extend(state: list[int], writes: Sequence[list[int]]) -> list[int]:
    return state + [x for write in writes for x in write]


class State(TypedDict, total=False):
    items: Annotated[list[int], DeltaChannel(extend, snapshot_frequency=4)]
    blob: dict[str, int]
    n: int


async def step(state: State) -> State:
    n = state["n"] + 1
    return {"n": n, "items": [n], "blob": {"n": n}}


def build() -> Any:
    graph = StateGraph(State)
    graph.add_node("step", step)
    graph.add_edge(START, "step")
    graph.add_conditional_edges("step", lambda s: "step" if s["n"] < 10 else END, ["step", END])
    return graph.compile


async def count(saver: SQLAlchemyCheckpointSaver, table: sa.Table, thread_id: str) -> int:
    async with saver.engine.connect() as conn:
        stmt = sa.select(sa.func.count()).select_from(table).where(table.c.thread_id == thread_id)
        return int((await conn.execute(stmt)).scalar_one())


async def test_keep_latest_keeps_what_delta_channels_replay(make_saver: SaverFactory) -> None:
    async with make_saver() as saver:
        app = build()(checkpointer=saver)
        cfg: Any = {"configurable": {"thread_id": "delta"}}
        await app.ainvoke({"n": 0, "items": []}, cfg)
        assert (await app.aget_state(cfg)).values["items"] == list(range(1, 11))
        total = await count(saver, checkpoints, "delta")

        await saver.aprune(["delta"])
        kept = await count(saver, checkpoints, "delta")
        # The latest checkpoint is not a snapshot point, so its ancestors back to one stay.
        assert 1 < kept < total
        state = await app.aget_state(cfg)
        assert state.values["items"] == list(range(1, 11)) and state.values["n"] == 10
        # And the thread goes on from there.
        await app.ainvoke({"n": 0}, cfg)
        assert (await app.aget_state(cfg)).values["items"] == list(range(1, 11)) + list(range(1, 11))


async def test_retention_collects_blobs_nothing_refers_to(make_saver: SaverFactory) -> None:
    async with make_saver() as saver:
        app = build()(checkpointer=saver)
        for thread in ("r1", "r2"):
            await app.ainvoke({"n": 0, "items": []}, {"configurable": {"thread_id": thread}})
        blobs_before = await count(saver, checkpoint_blobs, "r1")

        await saver.aprune_history(keep=3)
        for thread in ("r1", "r2"):
            cfg: Any = {"configurable": {"thread_id": thread}}
            history = [s async for s in app.aget_state_history(cfg)]
            assert 3 <= len(history) < 12
            assert history[0].values["blob"] == {"n": 10} and history[0].values["items"] == list(range(1, 11))
        assert await count(saver, checkpoint_blobs, "r1") < blobs_before

        await saver.aprune(["r1"], strategy="delete")
        assert await count(saver, checkpoints, "r1") == 0
        assert await count(saver, checkpoint_blobs, "r1") == 0
        assert await count(saver, checkpoints, "r2") > 0


async def test_copy_thread_carries_history_and_blobs(make_saver: SaverFactory) -> None:
    async with make_saver() as saver:
        app = build()(checkpointer=saver)
        await app.ainvoke({"n": 0, "items": []}, {"configurable": {"thread_id": "src"}})
        await saver.acopy_thread("src", "dst")
        copy = await app.aget_state({"configurable": {"thread_id": "dst"}})
        assert copy.values["items"] == list(range(1, 11)) and copy.values["blob"] == {"n": 10}
        await saver.adelete_thread("src")
        assert (await app.aget_state({"configurable": {"thread_id": "dst"}})).values["n"] == 10
