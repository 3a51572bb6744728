"""Load client of stepstream: the Python SDK over gRPC, every run on its own session.

Given several addresses (replicas), the SDK spreads its calls over them. One
HTTP/2 connection per CLIENTS_PER_CONNECTION concurrent loops, and at least
MIN_CONNECTIONS once there are that many loops: a server with several worker
processes (`serve --workers`) hands each connection to one worker at random, so
a single connection would leave the others idle. They can land unevenly (8
connections on 2 workers: 6 to 2 or worse 29% of the time); the SDK balances its
calls over the workers, which it learns from each call's trailer. The research
scenario is the demo's own session (`stepstream demo`): start, answer the
clarification, stream the answer.

`python -m bench.drivers.stepstream_driver` (requests on stdin, see bench/load.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.load import Report, RunOnce, Timing, main, soak_result
from stepstream.cli.demo import Tally, one_session
from stepstream.client import StepstreamClient

CLIENTS_PER_CONNECTION = 16
MIN_CONNECTIONS = 8
EXPECTED_TASKS = {"linear": 3, "mapreduce": 11}
# Runs started or awaited at once in the soak (the rest queue in this client).
SOAK_CALLS_IN_FLIGHT = 256


class Stepstream:
    def __init__(self) -> None:
        self.addresses: list[str] = []
        self.clients: dict[int, StepstreamClient] = {}

    async def start(self, request: dict[str, Any]) -> None:
        self.addresses = request["addresses"]

    def _client(self, concurrency: int) -> StepstreamClient:
        connections = min(concurrency, max(MIN_CONNECTIONS, -(-concurrency // CLIENTS_PER_CONNECTION)))
        if connections not in self.clients:
            self.clients[connections] = StepstreamClient(self.addresses, connections=connections)
        return self.clients[connections]

    def runner(self, request: dict[str, Any]) -> RunOnce:
        client = self._client(request["concurrency"])
        graph_id = request["graph"]
        if graph_id == "research_assistant":
            return self._session_runner(client)
        expected = EXPECTED_TASKS[graph_id]
        payload = request["input"]

        async def run_once(index: int, report: Report) -> None:
            began, first, finished, last = time.perf_counter(), None, 0, ""
            async for event in client.runs.stream(graph_id, payload, kinds=["tasks"]):
                if event.kind == "task_finished":
                    finished += 1
                    if first is None:
                        first = time.perf_counter() - began
                last = event.kind
            if last != "run_finished" or finished != expected:
                raise RuntimeError(f"run ended with {last} after {finished} tasks, expected {expected}")
            report(Timing(time.perf_counter() - began, first))

        return run_once

    @staticmethod
    def _session_runner(client: StepstreamClient) -> RunOnce:
        async def session(index: int, report: Report) -> None:
            tally = Tally(1, on_run_end=lambda latency, first: report(Timing(latency, first)))
            await one_session(client, index, tally)
            if tally.failed or not tally.done:
                raise RuntimeError("session did not end with an answer")

        return session

    async def soak(self, request: dict[str, Any]) -> dict[str, Any]:
        client = self._client(SOAK_CALLS_IN_FLIGHT)
        count, payload = request["count"], {"url": request["url"]}
        gate = asyncio.Semaphore(SOAK_CALLS_IN_FLIGHT)
        began = time.perf_counter()

        async def start() -> str:
            async with gate:
                run = await client.runs.start("waiting", payload)
                return str(run.run_id)

        run_ids = await asyncio.gather(*(start() for _ in range(count)))
        started = time.perf_counter() - began

        async def wait(run_id: str) -> str:
            async with gate:
                run = await client.runs.wait(run_id, timeout=900)
                return str(run.status)

        statuses = await asyncio.gather(*(wait(r) for r in run_ids), return_exceptions=True)
        return soak_result(count, began, started, [s == "succeeded" or s for s in statuses])

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()


if __name__ == "__main__":
    main(Stepstream())
