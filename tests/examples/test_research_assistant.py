"""The research-assistant example, run in-process with InMemorySaver against a real mock API.

The graph is loaded from its file path the way the server loads a config entry,
and given a checkpointer the way the server does (`graph.copy`).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.pregel import Pregel
from langgraph.types import Command

from stepstream.mockapi import ARXIV, WIKIPEDIA, Limit, MockApiConfig, MockApiServer, fetch_stats

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CLEAR_QUERY = "graph neural networks for chemistry"


def load_entry(config_file: Path, graph_id: str) -> Any:
    """Resolve a `"path:attr"` entry relative to its config file and import it by path."""
    entry = json.loads(config_file.read_text())["graphs"][graph_id]
    file_part, _, attr = entry.rpartition(":")
    path = (config_file.parent / file_part).resolve()
    name = f"research_assistant_under_test_{graph_id}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return getattr(module, attr)


GRAPH: Pregel[Any, Any, Any, Any] = load_entry(EXAMPLES / "stepstream.json", "research_assistant")
APIS: ModuleType = sys.modules["research_apis"]


@pytest.fixture
async def api() -> AsyncIterator[MockApiServer]:
    async with MockApiServer(MockApiConfig(latency_ms=(1.0, 5.0))) as server:
        yield server
    await APIS.aclose_http_clients()


def run_config(api: MockApiServer, thread: str, **configurable: Any) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread,
            "wikipedia_url": f"{api.url}/wikipedia",
            "arxiv_url": f"{api.url}/arxiv",
            **configurable,
        }
    }


def with_memory() -> Pregel[Any, Any, Any, Any]:
    return GRAPH.copy(update={"checkpointer": InMemorySaver()})


async def test_ambiguous_query_interrupts_and_resume_sets_the_query(api: MockApiServer) -> None:
    graph, cfg = with_memory(), run_config(api, "t-clarify")
    first = await graph.ainvoke({"query": "transformers"}, cfg, version="v2")
    assert len(first.interrupts) == 1
    request = first.interrupts[0].value
    assert request["type"] == "clarification"
    assert request["query"] == "transformers" and "transformers" in request["question"]
    assert request["suggestions"]
    assert (await graph.aget_state(cfg)).next == ("clarify",)
    assert (await fetch_stats(api.url))["endpoints"][WIKIPEDIA]["requests"] == 0  # nothing searched yet

    final = await graph.ainvoke(Command(resume="transformers in machine learning"), cfg, version="v2")
    assert not final.interrupts
    assert final.value["query"] == "transformers in machine learning"
    assert final.value["answer"]
    assert [m.type for m in final.value["messages"]] == ["human", "ai", "human", "ai"]


async def test_resume_accepts_a_query_object(api: MockApiServer) -> None:
    graph, cfg = with_memory(), run_config(api, "t-resume-obj")
    await graph.ainvoke({"query": "entropy"}, cfg)
    final = await graph.ainvoke(Command(resume={"query": "entropy in information theory"}), cfg)
    assert final["query"] == "entropy in information theory"


async def test_clear_query_and_messages_input_do_not_interrupt(api: MockApiServer) -> None:
    graph = with_memory()
    by_query = await graph.ainvoke({"query": CLEAR_QUERY}, run_config(api, "t-q"), version="v2")
    by_messages = await graph.ainvoke(
        {"messages": [HumanMessage(CLEAR_QUERY)]}, run_config(api, "t-m"), version="v2"
    )
    # JSON clients send messages as plain objects; add_messages turns them into messages.
    by_json = await graph.ainvoke(
        {"messages": [{"role": "user", "content": CLEAR_QUERY}]}, run_config(api, "t-j"), version="v2"
    )
    for result in (by_query, by_messages, by_json):
        assert not result.interrupts
        assert result.value["query"] == CLEAR_QUERY


async def test_send_fans_out_one_search_task_per_sub_query(api: MockApiServer) -> None:
    graph, cfg = with_memory(), run_config(api, "t-fanout", queries_per_source=3)
    started: list[dict[str, Any]] = []
    async for part in graph.astream({"query": CLEAR_QUERY}, cfg, stream_mode="tasks", version="v2"):
        task: Any = part["data"]
        if task["name"] == "search" and "input" in task:  # start events carry the input
            started.append(task["input"])
    assert len(started) == 6  # 2 sources x 3 sub-queries
    assert {t["source"] for t in started} == {WIKIPEDIA, ARXIV}
    assert len({(t["source"], t["query"]) for t in started}) == 6
    # All six ran as Send tasks of one superstep: the checkpoint before it schedules them together.
    nexts = [snapshot.next async for snapshot in graph.aget_state_history(cfg)]
    assert ("search",) * 6 in nexts
    state = (await graph.aget_state(cfg)).values
    assert len(state["searches"]) == 6 and all(s["status"] == "ok" for s in state["searches"])
    stats = (await fetch_stats(api.url))["endpoints"]
    assert stats[WIKIPEDIA]["served"] == 3 and stats[ARXIV]["served"] == 3


async def test_answer_mentions_the_titles_the_apis_returned(api: MockApiServer) -> None:
    graph, cfg = with_memory(), run_config(api, "t-titles", max_results=2)
    final = await graph.ainvoke({"query": CLEAR_QUERY}, cfg)
    # Ask the mock API directly: the answer must be built from what it serves.
    async with httpx.AsyncClient(base_url=api.url) as client:
        wiki = await client.get(
            "/wikipedia/w/api.php",
            params={
                "action": "query",
                "list": "search",
                "srsearch": CLEAR_QUERY,
                "srlimit": "2",
                "format": "json",
            },
        )
    wiki_titles = [hit["title"] for hit in wiki.json()["query"]["search"]]
    assert len(wiki_titles) == 2
    for title in wiki_titles:
        assert title in final["answer"]
    for hit in final["hits"]:
        assert hit["title"] in final["answer"]
    assert {hit["source"] for hit in final["hits"]} == {WIKIPEDIA, ARXIV}


async def test_answer_tokens_stream_in_messages_mode(api: MockApiServer) -> None:
    graph, cfg = with_memory(), run_config(api, "t-stream")
    chunks: list[AIMessageChunk] = []
    async for part in graph.astream({"query": CLEAR_QUERY}, cfg, stream_mode="messages", version="v2"):
        message, metadata = part["data"]
        assert isinstance(metadata, dict)
        if metadata["langgraph_node"] == "synthesize" and isinstance(message, AIMessageChunk):
            chunks.append(message)
    answer = (await graph.aget_state(cfg)).values["answer"]
    assert len(chunks) > 10
    assert len({chunk.id for chunk in chunks}) == 1  # one message, many chunks
    assert "".join(chunk.text for chunk in chunks) == answer


async def test_429s_are_counted_when_the_limit_is_tiny() -> None:
    # One request per endpoint now, the next in ~1000 s: each source's second search is refused,
    # and a Retry-After beyond max_retry_wait_s gives up at once instead of waiting.
    tiny = Limit(rate=0.001, burst=1)
    async with MockApiServer(MockApiConfig(limits={WIKIPEDIA: tiny, ARXIV: tiny}, latency_ms=(0, 0))) as api:
        graph, cfg = with_memory(), run_config(api, "t-429", queries_per_source=2)
        final = await graph.ainvoke({"query": CLEAR_QUERY}, cfg)
        stats = (await fetch_stats(api.url))["endpoints"]
    await APIS.aclose_http_clients()
    assert final["http_429"] == {WIKIPEDIA: 1, ARXIV: 1}
    assert stats[WIKIPEDIA]["rate_limited"] == 1 and stats[ARXIV]["rate_limited"] == 1
    statuses = sorted(s["status"] for s in final["searches"])
    assert statuses == ["ok", "ok", "rate_limited", "rate_limited"]
    assert "2 of them rate limited" in final["answer"]


async def test_retry_after_is_honoured_and_the_retry_succeeds() -> None:
    # 1 request per 2 s: the second Wikipedia search is refused with Retry-After 2, waits, and passes.
    limits = {WIKIPEDIA: Limit(rate=0.5, burst=1), ARXIV: Limit(rate=0, burst=1)}
    async with MockApiServer(MockApiConfig(limits=limits, latency_ms=(0, 0))) as api:
        graph = with_memory()
        cfg = run_config(api, "t-retry", queries_per_source=2, max_retries=3, max_retry_wait_s=10)
        final = await graph.ainvoke({"query": CLEAR_QUERY}, cfg)
        stats = (await fetch_stats(api.url))["endpoints"]
    await APIS.aclose_http_clients()
    wiki = [s for s in final["searches"] if s["source"] == WIKIPEDIA]
    assert all(s["status"] == "ok" for s in final["searches"])
    assert final["http_429"][WIKIPEDIA] >= 1
    assert max(s["attempts"] for s in wiki) >= 2
    assert stats[WIKIPEDIA]["served"] == 2
    assert stats[WIKIPEDIA]["rate_limited"] == final["http_429"][WIKIPEDIA]


async def test_a_new_question_on_the_same_session_starts_clean(api: MockApiServer) -> None:
    graph, cfg = with_memory(), run_config(api, "t-twice")
    await graph.ainvoke({"query": CLEAR_QUERY}, cfg)
    second = await graph.ainvoke({"query": "protein folding with diffusion models"}, cfg)
    assert len(second["searches"]) == 4
    assert all(s["query"].startswith("protein folding") for s in second["searches"])
    assert CLEAR_QUERY not in second["answer"]
    assert len(second["messages"]) == 4  # both questions and both answers are kept


async def test_runs_under_max_concurrency_one(api: MockApiServer) -> None:
    graph = with_memory()
    cfg = run_config(api, "t-mc")
    cfg["max_concurrency"] = 1
    final = await graph.ainvoke({"query": CLEAR_QUERY}, cfg)
    assert len(final["searches"]) == 4 and all(s["status"] == "ok" for s in final["searches"])


async def test_unreachable_api_is_recorded_not_raised(api: MockApiServer) -> None:
    graph = with_memory()
    cfg = run_config(api, "t-down", arxiv_url="http://127.0.0.1:9/arxiv")  # discard port: refused
    final = await graph.ainvoke({"query": CLEAR_QUERY}, cfg)
    arxiv = [s for s in final["searches"] if s["source"] == ARXIV]
    assert arxiv and all(s["status"] == "error" and s["error"] for s in arxiv)
    assert any(s["status"] == "ok" for s in final["searches"])
    assert "returned nothing" in final["answer"]


# What LangGraph's server and Aegra see when the benchmark serves them this graph
# (bench/peers): the file imported in an interpreter where stepstream is absent.
WITHOUT_STEPSTREAM = """
import asyncio, importlib.util, sys
sys.modules["stepstream"] = None  # `import stepstream...` now fails as it does where it is not installed
spec = importlib.util.spec_from_file_location("research_apis", sys.argv[1])
apis = importlib.util.module_from_spec(spec)
spec.loader.exec_module(apis)

async def main():
    async with apis.api_slot("wikipedia"):
        pass
    await apis.report_rate_limited("wikipedia", 1.0)
    await apis.learn_from_api("wikipedia", 429, {"Retry-After": "1"})
    print(apis.current_limiter, apis._limiter("wikipedia"))

asyncio.run(main())
"""


def test_the_limiter_hooks_do_nothing_where_stepstream_is_not_installed() -> None:
    module = EXAMPLES / "research_assistant" / "research_apis.py"
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_STEPSTREAM, str(module)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "None"]
