"""Graphs behind the HTTP-API harness (tests/server/http/): served by `langgraph dev` and by stepstream.

They import only langgraph and langchain_core, so the pinned LangGraph server's own venv can
load them as well as stepstream's. Every output is a function of the input (the fake chat
model answers from a fixed script), so two servers given the same calls must produce the same
events once ids and timestamps are set aside.

- chat: `prepare` writes a custom event, `model` streams a reply token by token.
- slow_chat: the same with a paced model and a long reply (a browser can reload mid-stream).
- nested: a subgraph between two parent nodes (stream_subgraphs, `mode|ns` events).
- approve: `ask` stops at interrupt(); the resumed run streams an answer naming the reply.
- slow: one node that ticks `ticks` times, `pace` seconds apart, writing a custom event each
  tick (cancel, join after a dropped connection, the multitask strategies).
- remember: a context_schema (`user_id` via Runtime) and the long-term store (runtime.store).
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime
from langgraph.types import interrupt


class PacedFakeChat(GenericFakeChatModel):
    """GenericFakeChatModel's whitespace-split chunks, `pace` seconds apart when streamed."""

    pace: float = 0.0

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        # BaseChatModel.astream reports each chunk to the callbacks (LangGraph's messages
        # stream) itself; this only paces them.
        for index, chunk in enumerate(self._stream(messages, stop=stop, **kwargs)):
            if index and self.pace:
                await asyncio.sleep(self.pace)
            yield chunk


def _last_text(messages: list[AnyMessage]) -> str:
    return str(messages[-1].content) if messages else ""


def _model(reply: str, pace: float) -> PacedFakeChat:
    return PacedFakeChat(messages=iter([AIMessage(content=reply)]), pace=pace)


class Chat(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    turns: int


async def prepare(state: Chat) -> dict[str, Any]:
    get_stream_writer()({"stage": "prepare", "seen": len(state.get("messages", []))})
    return {"turns": state.get("turns", 0) + 1}


def chat_reply(said: str, words: int) -> str:
    """What the chat graphs answer to `said`: an echo and `words` numbered words."""
    return f"You said: {said}. " + " ".join(f"word{i}" for i in range(words))


def _chat_node(pace: float, words: int) -> Any:
    async def model(state: Chat) -> dict[str, Any]:
        reply = chat_reply(_last_text(state.get("messages", [])), words)
        return {"messages": [await _model(reply, pace).ainvoke(state["messages"])]}

    return model


def _chat(pace: float, words: int) -> Any:
    builder = StateGraph(Chat)
    builder.add_node("prepare", prepare)
    builder.add_node("model", _chat_node(pace, words))
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "model")
    builder.add_edge("model", END)
    return builder.compile()


CHAT_WORDS, SLOW_CHAT_WORDS = 3, 30
chat = _chat(pace=0.0, words=CHAT_WORDS)
# About 60 chunks 80 ms apart: a page can be reloaded while it streams.
slow_chat = _chat(pace=0.08, words=SLOW_CHAT_WORDS)


class Steps(TypedDict, total=False):
    steps: Annotated[list[str], operator.add]


def _record(name: str) -> Any:
    async def node(state: Steps) -> dict[str, Any]:
        get_stream_writer()({"node": name})
        return {"steps": [name]}

    return node


_child = StateGraph(Steps)
_child.add_node("inner_a", _record("inner_a"))
_child.add_node("inner_b", _record("inner_b"))
_child.add_edge(START, "inner_a")
_child.add_edge("inner_a", "inner_b")
_child.add_edge("inner_b", END)

_nested = StateGraph(Steps)
_nested.add_node("before", _record("before"))
_nested.add_node("child", _child.compile())
_nested.add_node("after", _record("after"))
_nested.add_edge(START, "before")
_nested.add_edge("before", "child")
_nested.add_edge("child", "after")
_nested.add_edge("after", END)
nested = _nested.compile()


class Approval(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    approved: Any


async def ask(state: Approval) -> dict[str, Any]:
    answer = interrupt({"question": "Approve the plan?", "asked": _last_text(state.get("messages", []))})
    return {"approved": answer}


async def answer(state: Approval) -> dict[str, Any]:
    reply = f"Approved: {state.get('approved')}. Carrying on with the plan now."
    return {"messages": [await _model(reply, 0.05).ainvoke(state.get("messages", []))]}


_approve = StateGraph(Approval)
_approve.add_node("ask", ask)
_approve.add_node("answer", answer)
_approve.add_edge(START, "ask")
_approve.add_edge("ask", "answer")
_approve.add_edge("answer", END)
approve = _approve.compile()


class Ticking(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    ticks: int
    pace: float


async def tick(state: Ticking) -> dict[str, Any]:
    writer = get_stream_writer()
    ticks = state.get("ticks", 10)
    for i in range(ticks):
        writer({"tick": i})
        await asyncio.sleep(state.get("pace", 0.2))
    return {"log": [f"ticked {ticks}"]}


_slow = StateGraph(Ticking)
_slow.add_node("tick", tick)
_slow.add_edge(START, "tick")
_slow.add_edge("tick", END)
slow = _slow.compile()


@dataclass
class UserContext:
    user_id: str = "anonymous"


class Memory(TypedDict, total=False):
    note: str
    memories: list[str]


async def remember(state: Memory, runtime: Runtime[UserContext]) -> dict[str, Any]:
    assert runtime.store is not None, "the server gives every run a store"
    namespace = ("memories", runtime.context.user_id)
    note = state.get("note", "")
    await runtime.store.aput(namespace, f"note-{len(note)}-{note[:16]}", {"text": note})
    found = await runtime.store.asearch(namespace, limit=50)
    return {"memories": sorted(str(item.value["text"]) for item in found)}


_remember = StateGraph(Memory, context_schema=UserContext)
_remember.add_node("remember", remember)
_remember.add_edge(START, "remember")
_remember.add_edge("remember", END)
remember_graph = _remember.compile()
