"""Load client of a LangGraph-API server (`langgraph dev`, Aegra, stepstream's HTTP door):
langgraph-sdk streaming runs.

Runs in the peers' own environment: it imports only the standard library,
langgraph_sdk and bench/load.py. `threads=False` streams stateless runs (the
server makes and drops a thread per run, the fastest mode of `langgraph dev`,
and what every server is driven with); `threads=True` creates a thread per run
first (for a server without stateless runs, as Aegra before 0.9 was), and the
latency includes that call. One SDK client per CLIENTS_PER_SDK
concurrent loops: one httpx pool driving hundreds of SSE streams costs more
client CPU per run than the server spends.

`python -m bench.drivers.sdk_peer` (requests on stdin, see bench/load.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from langgraph_sdk import get_client

from bench.load import Report, RunOnce, Timing, main, soak_result

CLIENTS_PER_SDK = 16
EXPECTED_UPDATES = {"linear": 3, "mapreduce": 11}
SOAK_CALLS_IN_FLIGHT = 256
# Runs not started this long after the first, or not ended this long after the last was started,
# count as failed (a peer may never end a run whose worker lost it).
SOAK_START_SECONDS = 300.0
SOAK_SETTLE_SECONDS = 600.0


def _check(part: Any) -> None:
    if part.event == "error":
        raise RuntimeError(f"server error event: {str(part.data)[:200]}")


class SdkPeer:
    def __init__(self) -> None:
        self.url = ""
        self.threads = False
        self.clients: list[Any] = []

    async def start(self, request: dict[str, Any]) -> None:
        self.url, self.threads = request["url"], request["threads"]

    def _clients(self, concurrency: int) -> list[Any]:
        wanted = max(1, -(-concurrency // CLIENTS_PER_SDK))
        while len(self.clients) < wanted:
            self.clients.append(get_client(url=self.url, timeout=600))
        return self.clients[:wanted]

    def runner(self, request: dict[str, Any]) -> RunOnce:
        concurrency = request["concurrency"]
        clients = self._clients(concurrency)
        graph_id = request["graph"]
        if graph_id == "research_assistant":
            return self._session_runner(clients, concurrency, request["topics"])
        expected, payload = EXPECTED_UPDATES[graph_id], request["input"]

        async def run_once(index: int, report: Report) -> None:
            client = clients[(index % concurrency) % len(clients)]
            began, first, updates = time.perf_counter(), None, 0
            thread_id = (await client.threads.create())["thread_id"] if self.threads else None
            async for part in client.runs.stream(thread_id, graph_id, input=payload, stream_mode="updates"):
                _check(part)
                if part.event == "updates":
                    updates += 1
                    if first is None:
                        first = time.perf_counter() - began
            if updates != expected:
                raise RuntimeError(f"{updates} updates, expected {expected}")
            report(Timing(time.perf_counter() - began, first))

        return run_once

    @staticmethod
    def _session_runner(clients: list[Any], concurrency: int, topics: list[list[str]]) -> RunOnce:
        """The demo's session: ask, answer the clarification on the same thread, stream the answer."""

        async def session(index: int, report: Report) -> None:
            client = clients[(index % concurrency) % len(clients)]
            topic, answer = topics[index % len(topics)]
            thread_id = (await client.threads.create())["thread_id"]
            kwargs: dict[str, Any] = {"input": {"query": topic}}
            while True:
                began, first, interrupted, answered = time.perf_counter(), None, False, False
                async for part in client.runs.stream(
                    thread_id, "research_assistant", stream_mode=["updates", "messages-tuple"], **kwargs
                ):
                    _check(part)
                    if part.event.startswith(("updates", "messages", "values")) and first is None:
                        first = time.perf_counter() - began
                    if isinstance(part.data, dict):
                        # `langgraph dev` reports an interrupt as an update, Aegra as values.
                        interrupted = interrupted or "__interrupt__" in part.data
                        if part.event == "updates":
                            answered = answered or bool((part.data.get("synthesize") or {}).get("answer"))
                report(Timing(time.perf_counter() - began, first))
                if not interrupted:
                    if not answered:
                        raise RuntimeError("session ended without an answer")
                    return
                kwargs = {"command": {"resume": answer}}

        return session

    async def soak(self, request: dict[str, Any]) -> dict[str, Any]:
        """Background runs, each on its own thread, then a join of each."""
        clients = self._clients(SOAK_CALLS_IN_FLIGHT)
        count, payload = request["count"], {"url": request["url"]}
        gate = asyncio.Semaphore(SOAK_CALLS_IN_FLIGHT)
        began = time.perf_counter()

        async def start(i: int) -> tuple[str, str]:
            async with gate:
                client = clients[i % len(clients)]
                thread_id = (await client.threads.create())["thread_id"]
                run = await client.runs.create(thread_id, "waiting", input=payload)
                return thread_id, run["run_id"]

        starts = [asyncio.create_task(start(i)) for i in range(count)]
        _, late = await asyncio.wait(starts, timeout=SOAK_START_SECONDS)
        for task in late:
            task.cancel()
        started_runs: list[Any] = await asyncio.gather(*starts, return_exceptions=True)
        started_runs = [
            TimeoutError(f"not started within {SOAK_START_SECONDS:.0f} s") if task in late else run
            for task, run in zip(starts, started_runs, strict=True)
        ]
        started = time.perf_counter() - began
        give_up_at = time.perf_counter() + SOAK_SETTLE_SECONDS

        async def join(i: int, ids: tuple[str, str] | BaseException) -> bool:
            if isinstance(ids, BaseException):
                raise ids  # it never started
            async with gate:
                client = clients[i % len(clients)]
                # A join may give up on a run held longer than it waits (Aegra answers 500):
                # the run's own status is what counts, polled until it ends.
                with contextlib.suppress(Exception):
                    await client.runs.join(*ids)
                while (run := await client.runs.get(*ids))["status"] in ("pending", "running"):
                    if time.perf_counter() > give_up_at:
                        raise TimeoutError(f"still {run['status']} {SOAK_SETTLE_SECONDS:.0f} s on")
                    await asyncio.sleep(0.5)
                if run["status"] != "success":
                    raise RuntimeError(f"run ended {run['status']}")
                return True

        joins = (join(i, r) for i, r in enumerate(started_runs))
        results = await asyncio.gather(*joins, return_exceptions=True)
        return soak_result(count, began, started, results)

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()


if __name__ == "__main__":
    main(SdkPeer())
