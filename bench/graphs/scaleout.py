"""The scale-out benchmark's graph: three supersteps, each waiting on I/O."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph


class Io(TypedDict, total=False):
    wait: float
    steps: Annotated[list[str], operator.add]


def _step(name: str) -> Any:
    async def node(state: Io) -> dict[str, Any]:
        await asyncio.sleep(state.get("wait", 0.02))
        return {"steps": [name]}

    return node


builder = StateGraph(Io)
previous = START
for _name in ("fetch", "think", "write"):
    builder.add_node(_name, _step(_name))
    builder.add_edge(previous, _name)
    previous = _name
builder.add_edge(previous, END)
io = builder.compile()
