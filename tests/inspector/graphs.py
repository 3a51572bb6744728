"""Graphs the inspector's browser tests serve beside the research assistant (examples/).

- failing: `fetch` raises ConnectionError on every attempt; its RetryPolicy tries three times,
  then the run fails with that error (the timeline shows the error and the retries).
- steps: `count` supersteps of one node each, `pace` seconds apiece, slow enough for a replica
  to be killed mid-run and the run taken over.
"""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy

UNREACHABLE = "source unreachable: 503 from the search API"


class Fetching(TypedDict, total=False):
    query: str
    hits: list[str]


async def fetch(state: Fetching) -> dict[str, Any]:
    raise ConnectionError(UNREACHABLE)


_failing = StateGraph(Fetching)
_failing.add_node(
    "fetch", fetch, retry_policy=RetryPolicy(max_attempts=3, initial_interval=0.05, jitter=False)
)
_failing.add_edge(START, "fetch")
_failing.add_edge("fetch", END)
failing = _failing.compile()


class Stepping(TypedDict, total=False):
    done: Annotated[list[int], operator.add]
    count: int
    pace: float


async def step(state: Stepping) -> dict[str, Any]:
    await asyncio.sleep(state.get("pace", 1.0))
    return {"done": [len(state.get("done", []))]}


def more(state: Stepping) -> str:
    return "step" if len(state.get("done", [])) < state.get("count", 4) else END


_steps = StateGraph(Stepping)
_steps.add_node("step", step)
_steps.add_edge(START, "step")
_steps.add_conditional_edges("step", more, ["step", END])
steps = _steps.compile()
