"""Benchmark graphs: the same objects run in-process and through stepstream."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph


class Linear(TypedDict, total=False):
    x: int
    log: Annotated[list[str], operator.add]


def _step(name: str) -> Any:
    async def node(state: Linear) -> dict[str, Any]:
        return {"x": state.get("x", 0) + 1, "log": [name]}

    return node


linear_builder = StateGraph(Linear)
for _name in ("a", "b", "c"):
    linear_builder.add_node(_name, _step(_name))
linear_builder.add_edge(START, "a")
linear_builder.add_edge("a", "b")
linear_builder.add_edge("b", "c")
linear_builder.add_edge("c", END)
linear = linear_builder.compile()


class Waiting(TypedDict, total=False):
    seconds: float
    waited: bool


async def wait_on_io(state: Waiting) -> dict[str, Any]:
    await asyncio.sleep(state.get("seconds", 1.0))
    return {"waited": True}


waiting_builder = StateGraph(Waiting)
waiting_builder.add_node("wait", wait_on_io)
waiting_builder.add_edge(START, "wait")
waiting_builder.add_edge("wait", END)
waiting = waiting_builder.compile()
