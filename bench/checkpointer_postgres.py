"""Checkpointer benchmark on PostgreSQL: stepstream's saver against LangGraph's AsyncPostgresSaver.

The same graph and runs as bench/checkpointer.py, on a throwaway PostgreSQL
server started from the installed binaries, with a fresh database per trial.
The official saver gets its recommended set-up for concurrent use: a psycopg
connection pool (autocommit, no prepared statements, dict rows); stepstream's
saver runs on asyncpg with group commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from bench.checkpointer import CONCURRENCY, Result, _median, _throughput
from stepstream.server.storage.batch import GroupCommitWriter
from stepstream.server.storage.checkpointer import SQLAlchemyCheckpointSaver
from stepstream.server.storage.db import create_engine, upgrade_async
from tests.pgserver import PostgresServer, create_database

POOL_SIZE = 20  # the same number of connections as stepstream's engine pool


@asynccontextmanager
async def official(url: Any) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    conninfo = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    async with AsyncConnectionPool(conninfo, max_size=POOL_SIZE, kwargs=kwargs, open=False) as pool:
        saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
        await saver.setup()
        yield saver


@asynccontextmanager
async def stepstream(url: Any) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    await upgrade_async(url)
    engine = create_engine(url)
    writer = GroupCommitWriter(engine)
    try:
        yield SQLAlchemyCheckpointSaver(engine, writer)
    finally:
        await writer.close()
        await engine.dispose()


SAVERS = {"AsyncPostgresSaver": official, "stepstream": stepstream}


async def _main(quick: bool, admin_url: str) -> str:
    runs, trials = (300, 3) if quick else (1000, 5)
    lines = [
        "## Checkpointer on PostgreSQL: stepstream saver vs LangGraph AsyncPostgresSaver",
        "",
        f"3-node async linear graph, in-process `ainvoke`, {runs} runs per trial (each run on its own",
        f"thread), a fresh database per trial on one local PostgreSQL server; {POOL_SIZE} connections each.",
        f"The savers' trials alternate; each cell is the median-throughput trial of {trials}.",
        "Ratio = stepstream / official runs/s. CPU = this process's CPU time per run (not the server's).",
        "",
        "| concurrency | official runs/s | stepstream runs/s | ratio | official p50 / p99 ms "
        "| stepstream p50 / p99 ms | CPU ms/run official / stepstream | stepstream commits/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for concurrency in CONCURRENCY:
        res: dict[str, list[Result]] = {name: [] for name in SAVERS}
        for trial in range(trials):
            names = list(SAVERS) if trial % 2 == 0 else list(reversed(SAVERS))
            for name in names:
                db = await asyncio.to_thread(create_database, admin_url)
                res[name].append(await _throughput(SAVERS[name], db, concurrency, runs))  # type: ignore[arg-type]
        off, ours = _median(res["AsyncPostgresSaver"]), _median(res["stepstream"])
        lines.append(
            f"| {concurrency} | {off.runs_per_s:.0f} | {ours.runs_per_s:.0f} "
            f"| {ours.runs_per_s / off.runs_per_s:.2f} | {off.p50_ms:.2f} / {off.p99_ms:.2f} "
            f"| {ours.p50_ms:.2f} / {ours.p99_ms:.2f} "
            f"| {off.cpu_ms_per_run:.2f} / {ours.cpu_ms_per_run:.2f} "
            f"| {(ours.commits or 0) / runs:.2f} |"
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
