"""Graphs written for LangGraph's server that keep long-term memories in its Store.

- memory: `context_schema` names the user; `recall` (async) writes the note it was given under
  ("memories", user) with `runtime.store.aput` and reads them all back with `asearch`;
  `count` (a sync node, so in a worker thread) takes `store: BaseStore` as LangGraph injects it
  and counts every memory of the tenant with the sync `search`.
- probe: says whether the run was given a store (served once with the server's store and once
  with `"store": false`).

The user comes from the run's context; until every server passes a run's context through, it
falls back to `config["configurable"]["user_id"]`, which LangGraph's server also fills in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore


@dataclass
class UserContext:
    user_id: str = ""


class Notes(TypedDict, total=False):
    note: str
    recalled: list[str]
    tenant_memories: int


def _user(runtime: Runtime[UserContext], config: RunnableConfig) -> str:
    if runtime.context is not None and runtime.context.user_id:
        return runtime.context.user_id
    return str(config.get("configurable", {}).get("user_id") or "anonymous")


async def recall(state: Notes, runtime: Runtime[UserContext], config: RunnableConfig) -> dict[str, Any]:
    assert runtime.store is not None, "the server gives every run a store"
    namespace = ("memories", _user(runtime, config))
    if note := state.get("note"):
        await runtime.store.aput(namespace, f"note-{note}", {"text": note})
    found = await runtime.store.asearch(namespace, limit=100)
    return {"recalled": sorted(str(item.value["text"]) for item in found)}


def count(state: Notes, *, store: BaseStore) -> dict[str, Any]:
    return {"tenant_memories": len(store.search(("memories",), limit=1000))}


_memory = StateGraph(Notes, context_schema=UserContext)
_memory.add_node("recall", recall)
_memory.add_node("count", count)
_memory.add_edge(START, "recall")
_memory.add_edge("recall", "count")
_memory.add_edge("count", END)
memory = _memory.compile()


class Probe(TypedDict, total=False):
    has_store: bool


async def probe_store(state: Probe, runtime: Runtime[Any]) -> dict[str, Any]:
    return {"has_store": runtime.store is not None}


_probe = StateGraph(Probe)
_probe.add_node("probe_store", probe_store)
_probe.add_edge(START, "probe_store")
_probe.add_edge("probe_store", END)
probe = _probe.compile()
