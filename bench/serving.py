"""Trivial 3-node graph: stepstream (gRPC stream, durable on SQLite) beside in-process LangGraph.

Closed loop: C clients each start a run, read it to its end, and start the
next, for a fixed time after a warm-up. The same graph object runs in-process
with no checkpointer and with the official AsyncSqliteSaver (default
durability), each run on a new thread. Client and server share this machine's
cores, so the stepstream figures include the client's cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import pathlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from stepstream.server.process import ServerProcess
from stepstream.v1 import runs_pb2, runs_pb2_grpc

HERE = pathlib.Path(__file__).resolve().parent
CONFIG = HERE / "graphs" / "stepstream.json"
CONCURRENCY = (1, 32, 256)
CLIENTS_PER_CHANNEL = 32


@dataclasses.dataclass
class Cell:
    system: str
    concurrency: int
    runs: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = dataclasses.field(default_factory=list)
    first_event: list[float] = dataclasses.field(default_factory=list)
    peak_rss_mib: float | None = None

    @property
    def rate(self) -> float:
        return self.runs / self.seconds if self.seconds else 0.0

    def pct(self, values: list[float], q: float) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else float("nan")


RunOnce = Callable[[], Awaitable[float | None]]


async def closed_loop(cell: Cell, run_once: RunOnce, duration: float, warmup: float) -> Cell:
    stop_at = time.perf_counter() + warmup + duration
    measure_from = time.perf_counter() + warmup

    async def client() -> None:
        while time.perf_counter() < stop_at:
            began = time.perf_counter()
            try:
                first = await run_once()
            except Exception:
                cell.errors += 1
                continue
            ended = time.perf_counter()
            if began >= measure_from:
                cell.runs += 1
                cell.latencies.append(ended - began)
                if first is not None:
                    cell.first_event.append(first - began)

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(cell.concurrency)))
    cell.seconds = time.perf_counter() - max(began + warmup, measure_from)
    return cell


def load_graph() -> Any:
    spec = importlib.util.spec_from_file_location("bench_graphs", HERE / "graphs" / "graphs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # LangGraph resolves the state's annotations through it
    spec.loader.exec_module(module)
    return module.linear


@contextlib.asynccontextmanager
async def inprocess(saver: str, workdir: pathlib.Path) -> AsyncIterator[RunOnce]:
    graph = load_graph()
    if saver == "none":
        compiled = graph
        cm: Any = contextlib.nullcontext(None)
    else:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        cm = AsyncSqliteSaver.from_conn_string(str(workdir / f"official-{uuid.uuid4().hex}.db"))
    async with cm as checkpointer:
        if checkpointer is not None:
            compiled = graph.copy(update={"checkpointer": checkpointer})

        async def run_once() -> float | None:
            config = {"configurable": {"thread_id": uuid.uuid4().hex}}
            first = None
            async for _ in compiled.astream({"x": 0}, config, stream_mode="updates"):
                if first is None:
                    first = time.perf_counter()
            return first

        yield run_once


@contextlib.asynccontextmanager
async def through_stepstream(address: str, concurrency: int) -> AsyncIterator[RunOnce]:
    channels = [grpc.aio.insecure_channel(address) for _ in range(max(1, concurrency // CLIENTS_PER_CHANNEL))]
    stubs = [runs_pb2_grpc.RunServiceStub(c) for c in channels]
    request = runs_pb2.StreamRunRequest(
        run=runs_pb2.StartRunRequest(graph_id="linear", input_json='{"x": 0}')
    )
    turn = 0

    async def run_once() -> float | None:
        nonlocal turn
        turn += 1
        first = None
        last_kind = ""
        async for reply in stubs[turn % len(stubs)].StreamRun(request):
            if first is None:
                first = time.perf_counter()
            last_kind = reply.events[-1].WhichOneof("kind") or ""
        if last_kind != "run_finished":
            raise RuntimeError(f"run ended with {last_kind}")
        return first

    try:
        yield run_once
    finally:
        for channel in channels:
            await channel.close()


def peak_rss_mib(pid: int | None) -> float | None:
    if pid is None:
        return None
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


async def measure(quick: bool) -> list[Cell]:
    duration, warmup = (4.0, 1.0) if quick else (15.0, 3.0)
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="stepstream-bench-") as tmp:
        workdir = pathlib.Path(tmp)
        for concurrency in CONCURRENCY:
            for saver, name in (
                ("none", "langgraph in-process, no checkpointer"),
                ("sqlite", "langgraph in-process, AsyncSqliteSaver"),
            ):
                async with inprocess(saver, workdir) as run_once:
                    cells.append(await closed_loop(Cell(name, concurrency), run_once, duration, warmup))
            db = f"sqlite+aiosqlite:///{workdir / f'stepstream-{concurrency}.db'}"
            with ServerProcess(db, CONFIG, cwd=HERE) as server:
                async with through_stepstream(server.address, concurrency) as run_once:
                    cell = Cell("stepstream over gRPC, SQLite durable", concurrency)
                    cells.append(await closed_loop(cell, run_once, duration, warmup))
                cell.peak_rss_mib = peak_rss_mib(server.pid)
    return cells


@dataclasses.dataclass
class InFlight:
    runs: int
    wait_seconds: float
    started_seconds: float = 0.0
    total_seconds: float = 0.0
    succeeded: int = 0
    peak_rss_mib: float | None = None


async def in_flight(address: str, count: int, wait_seconds: float) -> InFlight:
    """Start `count` runs that each wait on I/O, so all are in flight at once; wait for every one."""
    result = InFlight(count, wait_seconds)
    channels = [grpc.aio.insecure_channel(address) for _ in range(8)]
    stubs = [runs_pb2_grpc.RunServiceStub(c) for c in channels]
    body = f'{{"seconds": {wait_seconds}}}'
    gate = asyncio.Semaphore(256)
    began = time.perf_counter()

    async def start(i: int) -> str:
        async with gate:
            request = runs_pb2.StartRunRequest(graph_id="waiting", input_json=body)
            return (await stubs[i % len(stubs)].StartRun(request)).run.run_id

    run_ids = await asyncio.gather(*(start(i) for i in range(count)))
    result.started_seconds = time.perf_counter() - began

    async def wait(i: int, run_id: str) -> bool:
        async with gate:
            request = runs_pb2.WaitRunRequest(run_id=run_id, timeout_seconds=600)
            reply = await stubs[i % len(stubs)].WaitRun(request)
            return reply.run.status == runs_pb2.RUN_STATUS_SUCCEEDED

    outcomes = await asyncio.gather(*(wait(i, r) for i, r in enumerate(run_ids)))
    result.total_seconds = time.perf_counter() - began
    result.succeeded = sum(outcomes)
    for channel in channels:
        await channel.close()
    return result


async def measure_in_flight(quick: bool) -> InFlight:
    # Each run must outlast the time it takes to start them all, or they never overlap.
    count, seconds = (10_000, 60.0) if quick else (10_000, 120.0)
    with tempfile.TemporaryDirectory(prefix="stepstream-bench-") as tmp:
        db = f"sqlite+aiosqlite:///{pathlib.Path(tmp) / 'in-flight.db'}"
        with ServerProcess(db, CONFIG, cwd=HERE) as server:
            result = await in_flight(server.address, count, seconds)
            result.peak_rss_mib = peak_rss_mib(server.pid)
    return result


def report_in_flight(r: InFlight) -> str:
    all_at_once = r.started_seconds < r.wait_seconds
    return "\n".join(
        [
            f"## In flight at once: {r.runs:,} runs each waiting {r.wait_seconds:g} s on I/O",
            "",
            "| runs | succeeded | all started in | all ended in | all in flight at once | peak RSS MiB |",
            "|---:|---:|---:|---:|---|---:|",
            f"| {r.runs:,} | {r.succeeded:,} | {r.started_seconds:.1f} s | {r.total_seconds:.1f} s "
            f"| {'yes' if all_at_once else 'no'} | {r.peak_rss_mib or 0:.0f} |",
            "",
        ]
    )


def report(cells: list[Cell]) -> str:
    lines = [
        "## Serving: trivial 3-node graph",
        "",
        "| system | clients | runs/s | p50 ms | p99 ms | first event p50 ms | errors | server peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        rss = f"{c.peak_rss_mib:.0f}" if c.peak_rss_mib else "-"
        first = f"{statistics.median(c.first_event) * 1000:.2f}" if c.first_event else "-"
        lines.append(
            f"| {c.system} | {c.concurrency} | {c.rate:.0f} | {c.p50:.2f} | {c.pct(c.latencies, 0.99):.2f} "
            f"| {first} | {c.errors} | {rss} |"
        )
    lines += ["", "Ratios (stepstream / baseline, same run):", ""]
    lines += ["| clients | runs/s vs no checkpointer | runs/s vs AsyncSqliteSaver | p50 vs official |"]
    lines += ["|---:|---:|---:|---:|"]
    for concurrency in CONCURRENCY:
        by = {c.system: c for c in cells if c.concurrency == concurrency}
        ours = by["stepstream over gRPC, SQLite durable"]
        bare = by["langgraph in-process, no checkpointer"]
        official = by["langgraph in-process, AsyncSqliteSaver"]
        lines.append(
            f"| {concurrency} | {ours.rate / bare.rate:.2f}x | {ours.rate / official.rate:.2f}x "
            f"| {ours.p50 / official.p50:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def run(quick: bool) -> str:
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    cells = runner(measure(quick))
    return report(cells) + "\n" + report_in_flight(runner(measure_in_flight(quick)))


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
