"""Store benchmark: stepstream's SQLStore against LangGraph's InMemoryStore and AsyncPostgresStore.

`python -m bench.store [--quick]` prints one markdown table. Every workload
runs on four stores in one process: LangGraph's `InMemoryStore` (no
persistence: the ceiling), LangGraph's official `AsyncPostgresStore` (from
langgraph-checkpoint-postgres, on a psycopg pool with its recommended
settings), and ours on SQLite (a file, WAL) and on PostgreSQL (asyncpg), the
PostgreSQL ones on one throwaway local server. Each repeat gives every store
a fresh database, in an order that rotates between repeats; a cell is the
median of the repeats' throughputs, and a ratio the median of the repeats'
ratios (so a slow moment of the machine hits both sides of a ratio alike).

Workloads (operations per second, `concurrency` callers at once):
- put: new items (~200 bytes of JSON) across 50 users' namespaces;
- get: items by key, from a store holding `items` items;
- search: a filtered search (`{"kind": "fact"}`, limit 10) in one user's namespace;
- semantic: a `query` search ranked by cosine similarity, 64-dim embeddings from
  a hashed bag of words (cheap, so the store is measured, not the model); the
  official PostgreSQL store needs pgvector for this, which is not installable
  here, so this row compares ours with InMemoryStore only.
"""

from __future__ import annotations

import asyncio
import hashlib
import pathlib
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from langgraph.store.base import BaseStore, IndexConfig
from langgraph.store.memory import InMemoryStore
from langgraph.store.postgres.aio import AsyncPostgresStore
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from stepstream.server.storage.db import create_engine, upgrade_async
from stepstream.server.storage.store import SQLStore
from tests.pgserver import PostgresServer, create_database

DIMS = 64
USERS = 50
POOL_SIZE = 20  # the official store's pool, as many connections as our engine's pool


def embed(texts: list[str]) -> list[list[float]]:
    vectors = []
    for text in texts:
        vector = [0.0] * DIMS
        for word in text.split():
            vector[int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big") % DIMS] += 1
        vectors.append(vector)
    return vectors


WORDS = ["moon", "pasta", "garden", "rocket", "python", "orchard"]
WORDS += ["river", "piano", "coffee", "mountain", "train", "chess"]
INDEX: IndexConfig = {"dims": DIMS, "embed": embed, "fields": ["text"]}


def value(i: int) -> dict[str, Any]:
    text = " ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 7))
    return {"text": f"{text} note {i}", "kind": "fact" if i % 3 else "preference", "n": i, "source": "bench"}


def namespace(i: int) -> tuple[str, ...]:
    return ("users", f"u{i % USERS}", "memories")


Factory = Callable[[str, bool], Any]  # (database URL, indexed) -> async context manager of a store


@asynccontextmanager
async def in_memory(_url: str, indexed: bool) -> AsyncIterator[BaseStore]:
    yield InMemoryStore(index=INDEX if indexed else None)


@asynccontextmanager
async def official(url: str, _indexed: bool) -> AsyncIterator[BaseStore]:
    conninfo = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    async with AsyncConnectionPool(conninfo, max_size=POOL_SIZE, kwargs=kwargs, open=False) as pool:
        store = AsyncPostgresStore(pool)  # type: ignore[arg-type]
        await store.setup()
        yield store


@asynccontextmanager
async def ours(url: str, indexed: bool) -> AsyncIterator[BaseStore]:
    await upgrade_async(url)
    engine = create_engine(url)
    try:
        yield SQLStore(engine, index=INDEX if indexed else None, owner="bench")
    finally:
        await engine.dispose()


STORES: dict[str, Factory] = {
    "InMemoryStore": in_memory,
    "PostgresStore": official,
    "ours SQLite": ours,
    "ours PostgreSQL": ours,
}


@dataclass(frozen=True)
class Workload:
    name: str
    concurrency: int
    indexed: bool = False


async def _drive(calls: int, concurrency: int, op: Callable[[int], Awaitable[Any]]) -> float:
    """Operations per second of `calls` calls of op(i), `concurrency` at a time."""
    counter = iter(range(calls))

    async def worker() -> None:
        for i in counter:
            await op(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return calls / (time.perf_counter() - start)


async def _fill(store: BaseStore, items: int) -> None:
    for start in range(0, items, 100):
        batch = range(start, start + 100)
        await asyncio.gather(*(store.aput(namespace(i), f"k{i}", value(i)) for i in batch))


async def _measure(store: BaseStore, work: Workload, items: int, calls: int) -> float:
    if work.name == "put":
        return await _drive(calls, work.concurrency, lambda i: store.aput(namespace(i), f"new{i}", value(i)))
    await _fill(store, items)
    if work.name == "get":
        return await _drive(
            calls, work.concurrency, lambda i: store.aget(namespace(i), f"k{(i * 7) % items}")
        )
    if work.name == "search":
        return await _drive(
            calls,
            work.concurrency,
            lambda i: store.asearch(namespace(i)[:2], filter={"kind": "fact"}, limit=10),
        )
    return await _drive(
        calls,
        work.concurrency,
        lambda i: store.asearch(namespace(i)[:2], query=f"{WORDS[i % len(WORDS)]} garden", limit=5),
    )


def _ratio(runs: dict[str, list[float]], a: str, b: str) -> str:
    """The median of the repeats' ratios a / b."""
    if not runs[a] or not runs[b]:
        return "—"
    return f"{statistics.median(x / y for x, y in zip(runs[a], runs[b], strict=True)):.2f}"


async def _main(quick: bool, admin_url: str) -> str:
    items, calls, repeats = (500, 400, 3) if quick else (2000, 2000, 5)
    workloads = [
        Workload("put", 1),
        Workload("put", 32),
        Workload("get", 32),
        Workload("search", 32),
        Workload("semantic", 8, indexed=True),
    ]
    names = list(STORES)
    lines = [
        "## Store: stepstream SQLStore vs LangGraph InMemoryStore and AsyncPostgresStore",
        "",
        f"{calls} calls per measurement, {items} items in the store for reads, {repeats} interleaved "
        "repeats (fresh databases each), medians. Operations per second; ratio = ours / official.",
        "",
        "| workload | concurrency | " + " | ".join(names) + " | ours PG / PostgresStore "
        "| ours SQLite / PostgresStore | ours SQLite / InMemory |",
        "|---|---|" + "---|" * (len(names) + 3),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for work in workloads:
            runs: dict[str, list[float]] = {name: [] for name in names}
            for repeat in range(repeats):
                order = names[repeat % len(names) :] + names[: repeat % len(names)]
                for name in order:
                    if name == "PostgresStore" and work.indexed:
                        continue  # needs pgvector
                    if name == "ours SQLite":
                        url = f"sqlite+aiosqlite:///{pathlib.Path(tmp) / f'{work.name}-{repeat}.db'}"
                    else:
                        url = await asyncio.to_thread(create_database, admin_url)
                    async with STORES[name](url, work.indexed) as store:
                        runs[name].append(await _measure(store, work, items, calls))

            cells = [f"{statistics.median(runs[n]):.0f}" if runs[n] else "—" for n in names]
            lines.append(
                f"| {work.name} | {work.concurrency} | " + " | ".join(cells) + " | "
                f"{_ratio(runs, 'ours PostgreSQL', 'PostgresStore')} "
                f"| {_ratio(runs, 'ours SQLite', 'PostgresStore')} "
                f"| {_ratio(runs, 'ours SQLite', 'InMemoryStore')} |"
            )
    return "\n".join([*lines, ""])


def run(quick: bool) -> str:
    server = PostgresServer()
    server.start()
    try:
        return asyncio.run(_main(quick, server.url))
    finally:
        server.stop()


if __name__ == "__main__":
    import sys

    print(run("--quick" in sys.argv))
