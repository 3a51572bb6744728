"""Checkpointer benchmark: stepstream's SQLAlchemy saver against LangGraph's AsyncSqliteSaver.

A trivial 3-node async linear graph run in-process at several concurrencies,
each saver on its own fresh SQLite file (WAL, synchronous=NORMAL for both, so
the comparison is of the savers, not of pragmas), the same runs for both.
Then the bytes each stores for runs on one thread whose state holds a large
channel that never changes.

`python -m bench --only checkpointer [--quick]`
"""

from __future__ import annotations

import asyncio
import pathlib
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph

from stepstream.server.storage.batch import GroupCommitWriter
from stepstream.server.storage.checkpointer import SQLAlchemyCheckpointSaver
from stepstream.server.storage.db import create_engine, upgrade_async

CONCURRENCY = (1, 32, 256)
BIG = "x" * 100_000

SaverFactory = Callable[[pathlib.Path], AbstractAsyncContextManager[BaseCheckpointSaver[Any]]]


class State(TypedDict, total=False):
    x: int
    big: str


async def _inc(state: State) -> State:
    return {"x": state.get("x", 0) + 1}


def _graph() -> StateGraph[State]:
    graph = StateGraph(State)
    for name in ("a", "b", "c"):
        graph.add_node(name, _inc)
    graph.add_edge(START, "a")
    graph.add_edge("a", "b")
    graph.add_edge("b", "c")
    graph.add_edge("c", END)
    return graph


@asynccontextmanager
async def official(path: pathlib.Path) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        await saver.setup()
        await saver.conn.execute("PRAGMA synchronous=NORMAL")
        yield saver


@asynccontextmanager
async def stepstream(path: pathlib.Path) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade_async(url)
    engine = create_engine(url)
    writer = GroupCommitWriter(engine)
    try:
        yield SQLAlchemyCheckpointSaver(engine, writer)
    finally:
        await writer.close()
        await engine.dispose()


SAVERS: dict[str, SaverFactory] = {"AsyncSqliteSaver": official, "stepstream": stepstream}


@dataclass
class Result:
    runs_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_run: float
    commits: int | None = None


async def _throughput(factory: SaverFactory, path: pathlib.Path, concurrency: int, runs: int) -> Result:
    async with factory(path) as saver:
        app = _graph().compile(checkpointer=saver)
        for i in range(min(concurrency, 32)):  # warm-up: pools, statement caches
            await app.ainvoke({"x": 0}, {"configurable": {"thread_id": f"warm-{i}"}})
        writer = saver.writer if isinstance(saver, SQLAlchemyCheckpointSaver) else None
        commits_before = writer.commits if writer else 0
        latencies: list[float] = []
        next_run = iter(range(runs))

        async def worker() -> None:
            for i in next_run:
                start = time.perf_counter()
                out = await app.ainvoke({"x": 0}, {"configurable": {"thread_id": f"t-{i}"}})
                latencies.append(time.perf_counter() - start)
                assert out["x"] == 3

        cpu, start = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    latencies.sort()
    return Result(
        runs_per_s=runs / elapsed,
        p50_ms=1000 * statistics.median(latencies),
        p99_ms=1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        cpu_ms_per_run=1000 * cpu / runs,
        commits=(writer.commits - commits_before) if writer else None,
    )


def _median(results: list[Result]) -> Result:
    """The trial with the median throughput (its latencies belong to the same trial)."""
    return sorted(results, key=lambda r: r.runs_per_s)[len(results) // 2]


async def _stored_bytes(factory: SaverFactory, path: pathlib.Path, runs: int) -> int:
    """Database size after `runs` runs on one thread; only the first run carries the big value."""
    async with factory(path) as saver:
        app = _graph().compile(checkpointer=saver)
        cfg: Any = {"configurable": {"thread_id": "one-thread"}}
        await app.ainvoke({"x": 0, "big": BIG}, cfg)
        for _ in range(runs - 1):
            await app.ainvoke({"x": 0}, cfg)
    # Fold the WAL back into the main file so the size is what is stored.
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.stat().st_size


async def _main(quick: bool) -> str:
    runs, trials = (300, 3) if quick else (1000, 5)
    size_runs = 50 if quick else 200
    lines = [
        "## Checkpointer: stepstream SQLAlchemy saver vs LangGraph AsyncSqliteSaver",
        "",
        f"3-node async linear graph, in-process `ainvoke`, {runs} runs per trial (each run on its",
        "own thread), fresh SQLite file per trial, WAL + synchronous=NORMAL for both. The savers'",
        f"trials alternate; each cell is the median-throughput trial of {trials}.",
        "Ratio = stepstream / official runs/s. CPU = process CPU time (all threads) per run.",
        "",
        "| concurrency | official runs/s | stepstream runs/s | ratio | official p50 / p99 ms "
        "| stepstream p50 / p99 ms | CPU ms/run official / stepstream | stepstream commits/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="bench-checkpointer-") as tmp:
        root = pathlib.Path(tmp)
        cell = 0
        for concurrency in CONCURRENCY:
            res: dict[str, list[Result]] = {name: [] for name in SAVERS}
            for trial in range(trials):
                names = list(SAVERS) if trial % 2 == 0 else list(reversed(SAVERS))
                for name in names:
                    cell += 1
                    res[name].append(await _throughput(SAVERS[name], root / f"{cell}.db", concurrency, runs))
            off, ours = _median(res["AsyncSqliteSaver"]), _median(res["stepstream"])
            lines.append(
                f"| {concurrency} | {off.runs_per_s:.0f} | {ours.runs_per_s:.0f} "
                f"| {ours.runs_per_s / off.runs_per_s:.2f} | {off.p50_ms:.2f} / {off.p99_ms:.2f} "
                f"| {ours.p50_ms:.2f} / {ours.p99_ms:.2f} "
                f"| {off.cpu_ms_per_run:.2f} / {ours.cpu_ms_per_run:.2f} "
                f"| {(ours.commits or 0) / runs:.2f} |"
            )
        sizes = {
            name: await _stored_bytes(factory, root / f"{name}-size.db", size_runs)
            for name, factory in SAVERS.items()
        }
    off_kb, ours_kb = sizes["AsyncSqliteSaver"] / 1024, sizes["stepstream"] / 1024
    lines += [
        "",
        f"Stored bytes: {size_runs} runs on one thread, state with a {len(BIG) // 1000} KB channel set by",
        "the first run and never changed (database file size after a WAL checkpoint):",
        "",
        "| official KiB | stepstream KiB | ratio |",
        "|---|---|---|",
        f"| {off_kb:.0f} | {ours_kb:.0f} | {ours_kb / off_kb:.3f} |",
        "",
    ]
    return "\n".join(lines)


def run(quick: bool) -> str:
    return asyncio.run(_main(quick))


if __name__ == "__main__":
    import sys

    print(run("--quick" in sys.argv))
