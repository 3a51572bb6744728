"""Load client that is also the system: LangGraph in this process, no server.

The graphs of bench/graphs and the research assistant of examples/ compiled
with no checkpointer, LangGraph's InMemorySaver, or its AsyncSqliteSaver
(`from_conn_string` on a file, as its documentation shows, with stepstream's
own SQLite durability), each run on a new thread, streamed with `astream` as
an application would.

`python -m bench.drivers.inprocess` (requests on stdin, see bench/load.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import pathlib
import sys
import time
import uuid
from types import ModuleType
from typing import Any

from langgraph.types import Command

from bench.load import Report, RunOnce, Timing, main, soak_result

ROOT = pathlib.Path(__file__).resolve().parents[2]
GRAPHS = ROOT / "bench" / "graphs" / "graphs.py"
RESEARCH = ROOT / "examples" / "research_assistant" / "graph.py"
EXPECTED_UPDATES = {"linear": 3, "mapreduce": 11}


def load_module(name: str, path: pathlib.Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # LangGraph resolves state annotations through it
    spec.loader.exec_module(module)
    return module


class InProcess:
    def __init__(self) -> None:
        self.graphs: dict[str, Any] = {}
        self.saver_cm: contextlib.AbstractAsyncContextManager[Any] | None = None
        self.saver: Any = None

    async def start(self, request: dict[str, Any]) -> None:
        kind = request["saver"]
        if kind == "memory":
            from langgraph.checkpoint.memory import InMemorySaver

            self.saver = InMemorySaver()
        elif kind == "sqlite":
            from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

            self.saver_cm = AsyncSqliteSaver.from_conn_string(request["sqlite_path"])
            self.saver = await self.saver_cm.__aenter__()
            await self.saver.setup()
            # stepstream's own durability on SQLite (WAL, synchronous=NORMAL: a commit survives the
            # process, not a power cut), so the comparison is of the software, not of fsync policy.
            await self.saver.conn.execute("PRAGMA synchronous=NORMAL")
        graphs = load_module("bench_graphs", GRAPHS)
        research = load_module("research_assistant_graph", RESEARCH)
        for name, graph in (
            ("linear", graphs.linear),
            ("mapreduce", graphs.mapreduce),
            ("waiting", graphs.waiting),
            ("research_assistant", research.graph),
        ):
            self.graphs[name] = graph.copy(update={"checkpointer": self.saver}) if self.saver else graph

    def runner(self, request: dict[str, Any]) -> RunOnce:
        graph_id = request["graph"]
        graph = self.graphs[graph_id]
        if graph_id == "research_assistant":
            if self.saver is None:
                raise RuntimeError("interrupts need a checkpointer")
            return self._session_runner(graph, request["topics"])
        expected = EXPECTED_UPDATES[graph_id]
        payload = request["input"]

        async def run_once(index: int, report: Report) -> None:
            config = {"configurable": {"thread_id": uuid.uuid4().hex}}
            began, first, updates = time.perf_counter(), None, 0
            async for _ in graph.astream(payload, config, stream_mode="updates"):
                updates += 1
                if first is None:
                    first = time.perf_counter() - began
            if updates != expected:
                raise RuntimeError(f"{updates} updates, expected {expected}")
            report(Timing(time.perf_counter() - began, first))

        return run_once

    def _session_runner(self, graph: Any, topics: list[list[str]]) -> RunOnce:
        async def session(index: int, report: Report) -> None:
            topic, answer = topics[index % len(topics)]
            config = {"configurable": {"thread_id": uuid.uuid4().hex}}
            payload: Any = {"query": topic}
            while True:
                began, first, interrupted = time.perf_counter(), None, False
                async for mode, chunk in graph.astream(payload, config, stream_mode=["updates", "messages"]):
                    if first is None:
                        first = time.perf_counter() - began
                    if mode == "updates" and "__interrupt__" in chunk:
                        interrupted = True
                report(Timing(time.perf_counter() - began, first))
                if not interrupted:
                    values = (await graph.aget_state(config)).values
                    if not values.get("answer"):
                        raise RuntimeError("session ended without an answer")
                    return
                payload = Command(resume=answer)

        return session

    async def soak(self, request: dict[str, Any]) -> dict[str, Any]:
        graph, count = self.graphs["waiting"], request["count"]
        began = time.perf_counter()

        async def one() -> bool | str:
            config = {"configurable": {"thread_id": uuid.uuid4().hex}}
            out = await graph.ainvoke({"url": request["url"]}, config)
            return out.get("status") == 200 or f"HTTP status {out.get('status')}"

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        started = time.perf_counter() - began
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        return soak_result(count, began, started, outcomes)

    async def close(self) -> None:
        if self.saver_cm is not None:
            await self.saver_cm.__aexit__(None, None, None)


if __name__ == "__main__":
    main(InProcess())
