"""Graphs the server tests serve (see tests/graphs/stepstream.json)."""

from __future__ import annotations

import asyncio
import operator
import time
from typing import Annotated, Any, TypedDict

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Send, interrupt

from stepstream.ratelimiter.client import rate_limited


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


class Ask(TypedDict, total=False):
    question: str
    answer: Any


async def ask_node(state: Ask) -> dict[str, Any]:
    answer = interrupt(state.get("question") or "question?")
    return {"answer": answer}


ask_builder = StateGraph(Ask)
ask_builder.add_node("ask", ask_node)
ask_builder.add_edge(START, "ask")
ask_builder.add_edge("ask", END)
ask = ask_builder.compile()


def _higher(a: int, b: int) -> int:
    return max(a, b)


class Fan(TypedDict, total=False):
    n: int
    delay: float
    results: Annotated[list[int], operator.add]
    peak: Annotated[int, _higher]
    total: int


_working = 0


def plan(state: Fan) -> list[Send]:
    return [Send("work", {"i": i, "delay": state.get("delay", 0.0)}) for i in range(state.get("n", 3))]


async def work(arg: dict[str, Any]) -> dict[str, Any]:
    global _working
    get_stream_writer()({"working_on": arg["i"]})
    _working += 1
    peak = _working
    try:
        await asyncio.sleep(arg["delay"])
        peak = max(peak, _working)
    finally:
        _working -= 1
    return {"results": [arg["i"]], "peak": peak}


def reduce_node(state: Fan) -> dict[str, Any]:
    time.sleep(0.001)  # a sync node: runs in the server's thread pool
    return {"total": sum(state.get("results", []))}


fan_builder = StateGraph(Fan)
fan_builder.add_node("work", work)
fan_builder.add_node("reduce", reduce_node)
fan_builder.add_conditional_edges(START, plan, ["work"])
fan_builder.add_edge("work", "reduce")
fan_builder.add_edge("reduce", END)
fanout = fan_builder.compile()


class Slow(TypedDict, total=False):
    steps: int
    delay: float
    done: Annotated[list[int], operator.add]


async def slow_node(state: Slow) -> dict[str, Any]:
    await asyncio.sleep(state.get("delay", 0.2))
    return {"done": [len(state.get("done", []))]}


def slow_next(state: Slow) -> str:
    return "tick" if len(state.get("done", [])) < state.get("steps", 5) else END


slow_builder = StateGraph(Slow)
slow_builder.add_node("tick", slow_node)
slow_builder.add_edge(START, "tick")
slow_builder.add_conditional_edges("tick", slow_next, ["tick", END])
slow = slow_builder.compile()


class Boom(TypedDict, total=False):
    x: int


async def explode(state: Boom) -> dict[str, Any]:
    raise ValueError("boom")


boom_builder = StateGraph(Boom)
boom_builder.add_node("explode", explode)
boom_builder.add_edge(START, "explode")
boom_builder.add_edge("explode", END)
boom = boom_builder.compile()


class Chat(TypedDict, total=False):
    messages: Annotated[list[Any], add_messages]


async def reply(state: Chat) -> dict[str, Any]:
    model = GenericFakeChatModel(messages=iter([AIMessage("hello from the fake model")]))
    return {"messages": [await model.ainvoke(state["messages"])]}


chat_builder = StateGraph(Chat)
chat_builder.add_node("reply", reply)
chat_builder.add_edge(START, "reply")
chat_builder.add_edge("reply", END)
chat = chat_builder.compile()


async def inner_node(state: Linear) -> dict[str, Any]:
    return {"log": ["inner"]}


inner_builder = StateGraph(Linear)
inner_builder.add_node("inner", inner_node)
inner_builder.add_edge(START, "inner")
inner_builder.add_edge("inner", END)

nested_builder = StateGraph(Linear)
nested_builder.add_node("outer", _step("outer"))
nested_builder.add_node("sub", inner_builder.compile())
nested_builder.add_edge(START, "outer")
nested_builder.add_edge("outer", "sub")
nested_builder.add_edge("sub", END)
nested = nested_builder.compile()


class Limited(TypedDict, total=False):
    n: int
    granted_at: Annotated[list[float], operator.add]


def plan_calls(state: Limited) -> list[Send]:
    return [Send("call_api", {}) for _ in range(state.get("n", 10))]


@rate_limited("test-api", timeout=60)
async def call_api(arg: dict[str, Any]) -> dict[str, Any]:
    # The token was granted just before this body runs: record when.
    return {"granted_at": [time.time()]}


limited_builder = StateGraph(Limited)
limited_builder.add_node("call_api", call_api)
limited_builder.add_conditional_edges(START, plan_calls, ["call_api"])
limited_builder.add_edge("call_api", END)
limited = limited_builder.compile()


@rate_limited("test-api", timeout=60)
async def paced_node(state: Slow) -> dict[str, Any]:
    await asyncio.sleep(state.get("delay", 0.2))
    return {"done": [len(state.get("done", []))]}


# `slow`, with a rate-limit token per tick: long enough to kill mid-run, and it calls the limiter.
paced_builder = StateGraph(Slow)
paced_builder.add_node("tick", paced_node)
paced_builder.add_edge(START, "tick")
paced_builder.add_conditional_edges("tick", slow_next, ["tick", END])
paced = paced_builder.compile()
