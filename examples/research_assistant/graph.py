"""A research assistant: clarify the question, search in parallel, write the answer.

    START -> clarify -> plan --Send x N--> search -> synthesize -> END

- clarify: a short query is ambiguous; `interrupt()` asks the user to sharpen it
  and the resume value (a string, or {"query": str}) becomes the query.
- plan: a few sub-queries per source (Wikipedia, arXiv).
- search: one task per sub-query through the `Send` API, all in one superstep, so
  `max_concurrency` bounds how many hit the APIs at once; each honours 429 +
  Retry-After with a bounded retry and counts the 429s it saw into the state.
- synthesize: a chat model writes the answer from the hits. By default a fake
  model streams an answer composed from the hits, token by token; set
  RESEARCH_ASSISTANT_MODEL (or the `model` configurable) to e.g.
  "openai:gpt-4o-mini" to use a real provider through `init_chat_model`.

Serve it with a config entry "research_assistant": "./research_assistant/graph.py:graph"
(see ../stepstream.json); README.md lists the configurable keys.

Annotations are evaluated eagerly (no `from __future__ import annotations`):
LangGraph reads the state TypedDicts at run time, and eager annotations resolve
however the server loaded this file.
"""

import os
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Send, interrupt
from typing_extensions import TypedDict  # pydantic needs it for JSON schemas on Python < 3.12

# The server loads this file by path, not as part of a package, so the sibling module
# is found through this folder on sys.path. Appended, not prepended: it can never
# shadow an installed module, and its distinctive name keeps it from being shadowed.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)

from research_apis import SOURCES, ApiSettings, Hit, SearchRecord  # noqa: E402
from research_apis import search as search_api  # noqa: E402

# Sub-query templates per source; `queries_per_source` takes the first N.
ANGLES: dict[str, tuple[str, ...]] = {
    "wikipedia": ("{q}", "{q} applications", "history of {q}"),
    "arxiv": ("{q}", "{q} benchmarks", "{q} survey"),
}


# ---------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------


def extend_or_reset(left: list[Any] | None, right: list[Any] | None) -> list[Any]:
    """Append a node's items; an update of None clears the list (a new question on the session)."""
    if right is None:
        return []
    return [*(left or []), *right]


def add_counts_or_reset(left: dict[str, int] | None, right: dict[str, int] | None) -> dict[str, int]:
    """Sum per-source counters from parallel search tasks; None clears them."""
    if right is None:
        return {}
    total = dict(left or {})
    for key, count in right.items():
        total[key] = total.get(key, 0) + count
    return total


class ResearchInput(TypedDict, total=False):
    """What a run takes: a query, or messages whose last human message is the query."""

    query: str
    messages: list[AnyMessage]


class SubQuery(TypedDict):
    """The payload of one `Send` to the search worker."""

    source: str
    query: str


class ResearchState(TypedDict, total=False):
    query: str
    messages: Annotated[list[AnyMessage], add_messages]
    sub_queries: list[SubQuery]
    hits: Annotated[list[Hit], extend_or_reset]
    searches: Annotated[list[SearchRecord], extend_or_reset]
    http_429: Annotated[dict[str, int], add_counts_or_reset]  # 429 answers seen, per source
    answer: str


@dataclass(frozen=True)
class ResearchSettings:
    """The workflow's knobs from `config["configurable"]` (the HTTP ones live in ApiSettings)."""

    clarify_min_words: int = 3  # a query with fewer words is ambiguous; 0 never asks
    queries_per_source: int = 2
    sources: tuple[str, ...] = SOURCES
    model: str = ""  # "provider:model" for init_chat_model; empty means the fake model

    @classmethod
    def from_config(cls, config: RunnableConfig) -> "ResearchSettings":
        conf = _configurable(config)
        sources = conf.get("sources", cls.sources)
        if isinstance(sources, str):
            sources = [s.strip() for s in sources.split(",") if s.strip()]
        unknown = [s for s in sources if s not in ANGLES]
        if unknown:
            raise ValueError(f"unknown sources {unknown}; known: {sorted(ANGLES)}")
        return cls(
            clarify_min_words=int(conf.get("clarify_min_words", cls.clarify_min_words)),
            queries_per_source=int(conf.get("queries_per_source", cls.queries_per_source)),
            sources=tuple(sources),
            model=str(conf.get("model") or os.environ.get("RESEARCH_ASSISTANT_MODEL", "")),
        )


def _configurable(config: RunnableConfig) -> Mapping[str, Any]:
    return config.get("configurable") or {}


# ---------------------------------------------------------------------------
# Nodes
# ---------------------------------------------------------------------------


def _last_human_text(messages: Sequence[BaseMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message.text
    return ""


def _resume_text(value: Any) -> str:
    """The clarified query from a resume value: a string or {"query": str}."""
    if isinstance(value, Mapping):
        value = value.get("query", "")
    return " ".join(str(value or "").split())


def clarification_request(query: str) -> dict[str, Any]:
    """The interrupt payload: what a front end shows the user."""
    if not query:
        return {"type": "clarification", "question": "What would you like me to research?", "query": ""}
    return {
        "type": "clarification",
        "question": f'"{query}" is broad. What exactly should I research?',
        "query": query,
        "suggestions": [f"{query} in computing", f"history of {query}", f"{query} in physics"],
    }


async def clarify(state: ResearchState, config: RunnableConfig) -> dict[str, Any]:
    """Settle the query, asking the user (interrupt) when it is missing or too short.

    On resume LangGraph re-runs this node from the top and `interrupt()` returns
    the resume value, so nothing before it may have side effects.
    """
    settings = ResearchSettings.from_config(config)
    history = state.get("messages", [])
    query = " ".join((state.get("query") or _last_human_text(history)).split())
    transcript: list[AnyMessage] = []
    if query and _last_human_text(history) != query:
        transcript.append(HumanMessage(query))
    ambiguous = len(query.split()) < settings.clarify_min_words
    while not query or ambiguous:
        request = clarification_request(query)
        reply = _resume_text(interrupt(request))
        transcript.append(AIMessage(request["question"]))
        if reply:
            transcript.append(HumanMessage(reply))
        # An empty reply keeps an existing query; with no query at all, ask again.
        query, ambiguous = reply or query, False
    return {"query": query, "messages": transcript}


async def plan(state: ResearchState, config: RunnableConfig) -> dict[str, Any]:
    settings = ResearchSettings.from_config(config)
    query = state["query"]
    sub_queries = [
        SubQuery(source=source, query=angle.format(q=query))
        for source in settings.sources
        for angle in ANGLES[source][: max(0, settings.queries_per_source)]
    ]
    # None resets the accumulated lists: a session's earlier question must not leak into this one.
    return {"sub_queries": sub_queries, "hits": None, "searches": None, "http_429": None, "answer": ""}


def fan_out(state: ResearchState) -> list[Send] | Literal["synthesize"]:
    """One search task per sub-query, all in the next superstep."""
    sends = [Send("search", sub_query) for sub_query in state.get("sub_queries", [])]
    return sends or "synthesize"


async def search(state: SubQuery, config: RunnableConfig) -> dict[str, Any]:
    """A search worker: its `state` is one Send payload, not the graph state."""
    settings = ApiSettings.from_configurable(_configurable(config))
    hits, record = await search_api(state["source"], state["query"], settings)
    return {"hits": hits, "searches": [record], "http_429": {state["source"]: record["http_429"]}}


def _unique(hits: Sequence[Hit]) -> list[Hit]:
    seen: set[tuple[str, str]] = set()
    unique = []
    for hit in hits:
        if (hit["source"], hit["title"]) not in seen:
            seen.add((hit["source"], hit["title"]))
            unique.append(hit)
    return unique


def _first_sentence(text: str, limit: int = 160) -> str:
    sentence = text.split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"


def compose_answer(query: str, hits: Sequence[Hit], searches: Sequence[SearchRecord]) -> str:
    """The fake model's answer: a real summary of what the searches returned."""
    if not hits:
        lines = [f'I could not retrieve any sources on "{query}".']
    else:
        lines = [f'Here is what I found on "{query}".']
        for source, label in (("wikipedia", "Wikipedia"), ("arxiv", "arXiv")):
            found = [h for h in hits if h["source"] == source]
            if found:
                lines += ["", f"From {label}:"]
                # The top hit gets a sentence, the others their title: an answer of summary length.
                top, rest = found[0], found[1:]
                lines.append(f"- {top['title']}: {_first_sentence(top['snippet'])}.")
                lines += [f"- {h['title']}" for h in rest]
    failed = [s for s in searches if s["status"] != "ok"]
    lines += ["", f"Based on {len(hits)} sources from {len(searches)} searches."]
    if failed:
        limited = sum(1 for s in failed if s["status"] == "rate_limited")
        lines.append(f"{len(failed)} searches returned nothing ({limited} of them rate limited).")
    return "\n".join(lines)


@lru_cache(maxsize=8)
def _provider_model(name: str) -> BaseChatModel:
    try:
        from langchain.chat_models import init_chat_model
    except ImportError as exc:
        raise RuntimeError(f"model {name!r} needs `pip install langchain` and the provider package") from exc
    model: BaseChatModel = init_chat_model(name)
    return model


class StreamingFakeChatModel(GenericFakeChatModel):
    """The fake model, streaming on the event loop as real providers' async clients do.

    The base class only streams synchronously, so under `ainvoke` langchain-core
    hands every token to a thread pool and back; at a few thousand tokens a
    second that hop was a fifth of the server's event loop in profiles.
    """

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._stream(messages, stop=stop, **kwargs):
            if run_manager is not None:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk


def chat_model(name: str, fake_answer: str) -> BaseChatModel:
    if name:
        return _provider_model(name)
    # A fresh fake per call: its `messages` iterator is used up by one answer.
    return StreamingFakeChatModel(messages=iter([AIMessage(fake_answer)]))


def research_prompt(query: str, hits: Sequence[Hit]) -> list[BaseMessage]:
    sources = "\n".join(f"[{h['source']}] {h['title']}: {h['snippet']}" for h in hits) or "(none)"
    return [
        SystemMessage(
            "You are a research assistant. Answer from the sources only and name the titles you use."
        ),
        HumanMessage(f"Question: {query}\n\nSources:\n{sources}"),
    ]


async def synthesize(state: ResearchState, config: RunnableConfig) -> dict[str, Any]:
    """Write the answer; the model's tokens reach stream_mode="messages" as they come."""
    settings = ResearchSettings.from_config(config)
    query = state["query"]
    hits = _unique(state.get("hits", []))
    model = chat_model(settings.model, compose_answer(query, hits, state.get("searches", [])))
    # Passing config keeps the model call under this node's callbacks, which stream its tokens.
    reply = await model.ainvoke(research_prompt(query, hits), config)
    return {"answer": reply.text, "messages": [reply]}


# ---------------------------------------------------------------------------
# Graph
# ---------------------------------------------------------------------------

builder = StateGraph(ResearchState, input_schema=ResearchInput)
builder.add_node("clarify", clarify)
builder.add_node("plan", plan)
# The worker's input is each Send payload (SubQuery), not the graph state.
builder.add_node("search", search, input_schema=SubQuery)
builder.add_node("synthesize", synthesize)
builder.add_edge(START, "clarify")
builder.add_edge("clarify", "plan")
builder.add_conditional_edges("plan", fan_out, ["search", "synthesize"])
builder.add_edge("search", "synthesize")
builder.add_edge("synthesize", END)

# No checkpointer here: the server attaches its own (interrupts need one).
graph = builder.compile(name="research_assistant")
