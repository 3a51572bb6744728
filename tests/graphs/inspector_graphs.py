"""Graphs of the inspector's tests (tests/graphs/inspector.json): a fan-out whose one task fails."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send


class FanFail(TypedDict, total=False):
    n: int
    # The index of the task that raises (-1: none does).
    fail: int
    delay: float
    results: Annotated[list[int], operator.add]


def _plan(state: FanFail) -> list[Send]:
    return [
        Send("work", {"i": i, "fail": state.get("fail", -1), "delay": state.get("delay", 0.0)})
        for i in range(state.get("n", 3))
    ]


async def _work(arg: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(arg["delay"])
    if arg["i"] == arg["fail"]:
        raise RuntimeError(f"task {arg['i']} failed on purpose")
    return {"results": [arg["i"]]}


def _prepare(state: FanFail) -> dict[str, Any]:
    return {}


def _total(state: FanFail) -> dict[str, Any]:
    return {}


_builder = StateGraph(FanFail)
_builder.add_node("prepare", _prepare)
_builder.add_node("work", _work)
_builder.add_node("total", _total)
_builder.add_edge(START, "prepare")
_builder.add_conditional_edges("prepare", _plan, ["work"])
_builder.add_edge("work", "total")
_builder.add_edge("total", END)
fanfail = _builder.compile()
