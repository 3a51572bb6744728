"""Benchmark graphs: the same objects run in-process, through stepstream and through the peers.

Only LangGraph and aiohttp are imported, so the peers' own environments load
this file as it is. Annotations are evaluated eagerly (no `from __future__
import annotations`): LangGraph reads the state types at run time, however the
server loaded this file.
"""

import asyncio
import operator
import weakref
from typing import Annotated, Any, TypedDict

import aiohttp
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

MAP_TASKS = 10
MAP_TASK_SECONDS = 0.05


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


class MapReduce(TypedDict, total=False):
    n: int
    results: Annotated[list[int], operator.add]
    total: int


def plan(state: MapReduce) -> list[Send]:
    return [Send("work", {"i": i}) for i in range(state.get("n", MAP_TASKS))]


async def work(task: dict[str, Any]) -> dict[str, Any]:
    """A map task: its input is its Send payload, not the graph state."""
    await asyncio.sleep(MAP_TASK_SECONDS)  # one task's I/O
    return {"results": [task["i"]]}


async def reduce(state: MapReduce) -> dict[str, Any]:
    return {"total": sum(state.get("results", []))}


mapreduce_builder = StateGraph(MapReduce)
mapreduce_builder.add_node("work", work)
mapreduce_builder.add_node("reduce", reduce)
mapreduce_builder.add_conditional_edges(START, plan, ["work"])
mapreduce_builder.add_edge("work", "reduce")
mapreduce_builder.add_edge("reduce", END)
mapreduce = mapreduce_builder.compile()


class Waiting(TypedDict, total=False):
    url: str
    status: int


# One client session per event loop, with no cap on connections: every run's
# request must be open at once.
_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
    weakref.WeakKeyDictionary()
)


def _session() -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        _sessions[loop] = session
    return session


async def wait_on_io(state: Waiting) -> dict[str, Any]:
    """A request the slow server answers only once the benchmark releases it."""
    timeout = aiohttp.ClientTimeout(total=900)
    async with _session().get(state["url"], timeout=timeout) as response:
        await response.read()
        return {"status": response.status}


waiting_builder = StateGraph(Waiting)
waiting_builder.add_node("wait", wait_on_io)
waiting_builder.add_edge(START, "wait")
waiting_builder.add_edge("wait", END)
waiting = waiting_builder.compile()
