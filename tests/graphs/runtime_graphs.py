"""Graphs of LangGraph's runtime features the tests serve: per-run context (see stepstream.json).

Annotations are evaluated eagerly (no `from __future__ import annotations`): pydantic
reads the context type's fields however the server loaded this file.
"""

import asyncio
import dataclasses
import operator
from typing import Annotated, Any, Literal, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime


@dataclasses.dataclass
class Persona:
    """What a run says about its caller; nodes read it as `runtime.context`."""

    user: str
    tone: Literal["plain", "loud"] = "plain"
    limit: int = 3


class Visit(TypedDict, total=False):
    steps: int
    delay: float
    # One entry per step: what the node saw of the context ("-" for none).
    seen: Annotated[list[str], operator.add]
    # The `model` configurable the node saw.
    model: str


async def visit(state: Visit, config: RunnableConfig, runtime: Runtime[Persona]) -> dict[str, Any]:
    await asyncio.sleep(state.get("delay", 0))
    context = runtime.context
    seen = "-" if context is None else f"{context.user}/{context.tone}/{context.limit}"
    return {"seen": [seen], "model": str(config.get("configurable", {}).get("model", ""))}


def visit_again(state: Visit) -> str:
    return "visit" if len(state.get("seen", [])) < state.get("steps", 1) else END


context_builder = StateGraph(Visit, context_schema=Persona)
context_builder.add_node("visit", visit)
context_builder.add_edge(START, "visit")
context_builder.add_conditional_edges("visit", visit_again, ["visit", END])
context = context_builder.compile()
