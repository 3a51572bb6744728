"""Scale-out on PostgreSQL: replicas of `stepstream serve` on one throwaway database.

- Throughput of an I/O-bound graph (three supersteps of 20 ms) with 1 and 2 replicas, the
  client balancing its streams over every replica's address.
- Cross-replica event lag: runs start on replica B and are joined on replica A; the lag of an
  event is its arrival at the client minus its creation on B. The baseline is the same join
  on B itself.
- Recovery: a run's replica is SIGKILLed after its first superstep; the time until another
  replica announces the run started again (median and max over the trials).
"""

from __future__ import annotations

import asyncio
import pathlib
import statistics
import time
import uuid

import grpc

from stepstream.server.cluster import LocalCluster
from stepstream.v1 import runs_pb2, runs_pb2_grpc
from tests.pgserver import PostgresServer, create_database

HERE = pathlib.Path(__file__).resolve().parent
CONFIG = HERE / "graphs" / "scaleout.json"
CONCURRENCY = 128


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def _cluster(admin_url: str, replicas: int) -> LocalCluster:
    return LocalCluster(create_database(admin_url), CONFIG, replicas, cwd=HERE / "graphs")


async def _throughput(addresses: list[str], seconds: float) -> tuple[float, int]:
    channels = [grpc.aio.insecure_channel(a) for a in addresses for _ in range(2)]
    stubs = [runs_pb2_grpc.RunServiceStub(c) for c in channels]
    request = runs_pb2.StreamRunRequest(run=runs_pb2.StartRunRequest(graph_id="io", input_json="{}"))
    done = errors = 0
    stop_at = time.perf_counter() + seconds

    async def client(index: int) -> None:
        nonlocal done, errors
        turn = index
        while time.perf_counter() < stop_at:
            turn += 1
            kind = ""
            try:
                async for reply in stubs[turn % len(stubs)].StreamRun(request):
                    kind = reply.events[-1].WhichOneof("kind") or ""
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            if kind == "run_finished":
                done += 1
            else:
                errors += 1

    began = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(CONCURRENCY)))
    elapsed = time.perf_counter() - began
    for channel in channels:
        await channel.close()
    return done / elapsed, errors


async def _lags(join_at: str, start_at: str, runs: int) -> list[float]:
    """Arrival minus creation of every event of `runs` runs started on one replica."""
    lags: list[float] = []
    async with (
        grpc.aio.insecure_channel(start_at) as start_channel,
        grpc.aio.insecure_channel(join_at) as join,
    ):
        starter = runs_pb2_grpc.RunServiceStub(start_channel)
        joiner = runs_pb2_grpc.RunServiceStub(join)

        async def one() -> None:
            started = await starter.StartRun(runs_pb2.StartRunRequest(graph_id="io", input_json="{}"))
            async for reply in joiner.JoinRun(runs_pb2.JoinRunRequest(run_id=started.run.run_id)):
                now = time.time()
                # Events the join replayed from storage (created before it began) are not live.
                lags.extend(now - e.time.ToDatetime().timestamp() for e in reply.events if e.seq > 2)

        for _ in range(runs // 16):
            await asyncio.gather(*(one() for _ in range(16)))
    return lags


async def _recovery(cluster: LocalCluster, trials: int) -> list[float]:
    seconds: list[float] = []
    for _ in range(trials):
        victim, survivor = cluster.replicas[1], cluster.replicas[0]
        async with (
            grpc.aio.insecure_channel(victim.address) as vc,
            grpc.aio.insecure_channel(survivor.address) as sc,
        ):
            start = runs_pb2.StartRunRequest(
                graph_id="io", input_json='{"wait": 0.5}', run_id=f"recover-{uuid.uuid4().hex[:8]}"
            )
            run = (await runs_pb2_grpc.RunServiceStub(vc).StartRun(start)).run
            survivor_runs = runs_pb2_grpc.RunServiceStub(sc)
            join = survivor_runs.JoinRun(runs_pb2.JoinRunRequest(run_id=run.run_id))
            killed_at = 0.0
            async for reply in join:
                for event in reply.events:
                    kind = event.WhichOneof("kind")
                    if kind == "superstep_finished" and not killed_at:
                        cluster.kill(1)
                        killed_at = time.time()
                    if kind == "run_started" and event.run_started.attempt == 2:
                        seconds.append(event.time.ToDatetime().timestamp() - killed_at)
                if any(e.WhichOneof("kind") == "run_finished" for e in reply.events):
                    break
        await asyncio.to_thread(cluster.restart, 1)
    return seconds


def run(quick: bool) -> str:
    seconds, lag_runs, trials = (8.0, 160, 3) if quick else (20.0, 640, 10)
    lines = [
        "## Scale-out on PostgreSQL: replicas, cross-replica streams, recovery",
        "",
        f"I/O-bound graph (3 supersteps of 20 ms), {CONCURRENCY} streaming clients balanced over "
        "the replicas' addresses; one throwaway PostgreSQL; 2 shared cores for everything.",
        "",
    ]
    pg = PostgresServer()
    pg.start()
    try:
        rates: dict[int, tuple[float, int]] = {}
        for replicas in (1, 2):
            with _cluster(pg.url, replicas) as cluster:
                rates[replicas] = asyncio.run(_throughput(cluster.addresses, seconds))
        lines += ["| replicas | runs/s | errors | vs 1 replica |", "|---|---|---|---|"]
        for replicas, (rate, errors) in rates.items():
            lines.append(f"| {replicas} | {rate:.0f} | {errors} | {rate / rates[1][0]:.2f}x |")
        with _cluster(pg.url, 2) as cluster:
            a, b = cluster.addresses
            remote = asyncio.run(_lags(a, b, lag_runs))
            local = asyncio.run(_lags(b, b, lag_runs))
            recovery = asyncio.run(_recovery(cluster, trials))
    finally:
        pg.stop()
    lines += [
        "",
        "| event lag | p50 ms | p99 ms | events |",
        "|---|---|---|---|",
        f"| joined on the replica running it | {_pct(local, 0.5) * 1000:.1f} | "
        f"{_pct(local, 0.99) * 1000:.1f} | {len(local)} |",
        f"| joined on another replica (LISTEN/NOTIFY) | {_pct(remote, 0.5) * 1000:.1f} | "
        f"{_pct(remote, 0.99) * 1000:.1f} | {len(remote)} |",
        "",
        f"Recovery after SIGKILL (lease 3 s, {len(recovery)} trials): median "
        f"{statistics.median(recovery):.2f} s, max {max(recovery):.2f} s from the kill to the run "
        "started again on another replica (aim: ≤ 5 s)."
        if recovery
        else "Recovery: no trial completed.",
        "",
    ]
    return "\n".join(lines)
