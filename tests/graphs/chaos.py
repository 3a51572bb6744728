"""A graph whose every node execution leaves a row in a side table (the chaos test).

Each node records (run id, node, replica process) in `chaos_effects` of the database named
by STEPSTREAM_CHAOS_DB before it returns, so the test can count how often each superstep's
side effect happened across replica kills.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, TypedDict

import asyncpg
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

NODES = ("fetch", "think", "write")
_pool: asyncpg.Pool | None = None
_pool_lock = asyncio.Lock()


async def _effects() -> asyncpg.Pool:
    global _pool
    async with _pool_lock:
        if _pool is None:
            _pool = await asyncpg.create_pool(os.environ["STEPSTREAM_CHAOS_DB"], min_size=1, max_size=8)
        return _pool


class Chaos(TypedDict, total=False):
    delay: float
    done: list[str]


def _node(name: str) -> Any:
    async def node(state: Chaos, config: RunnableConfig) -> dict[str, Any]:
        await asyncio.sleep(state.get("delay", 0.2))
        run_id = config["metadata"]["run_id"]
        pool = await _effects()
        await pool.execute(
            "INSERT INTO chaos_effects (run_id, node, pid) VALUES ($1, $2, $3)", run_id, name, os.getpid()
        )
        return {"done": [*state.get("done", []), name]}

    return node


builder = StateGraph(Chaos)
previous = START
for _name in NODES:
    builder.add_node(_name, _node(_name))
    builder.add_edge(previous, _name)
    previous = _name
builder.add_edge(previous, END)
chaos = builder.compile()
