"""Chaos: 3 replicas on PostgreSQL run 1,000 runs while replicas are SIGKILLed and restarted at
random points. Every run finishes; each superstep's side effect happens once, except the task a
kill interrupted (it may run again on the replica that takes over); every event stream is
complete and in order."""

from __future__ import annotations

import asyncio
import collections
import random
import threading
import time
import uuid
from collections.abc import Iterator

import asyncpg
import grpc
import pytest

from stepstream.server.cluster import LocalCluster
from stepstream.v1 import runs_pb2, runs_pb2_grpc
from tests.pgserver import create_database
from tests.support import ROOT

pytestmark = pytest.mark.process

RUNS = 1_000
NODES = 3
CONFIG = ROOT / "tests" / "graphs" / "chaos.json"


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture
def chaos_db(postgres_url: str) -> str:
    url = create_database(postgres_url)

    async def side_table() -> None:
        conn = await asyncpg.connect(_plain(url))
        try:
            await conn.execute("CREATE TABLE chaos_effects (run_id text, node text, pid int)")
        finally:
            await conn.close()

    asyncio.run(side_table())
    return url


@pytest.fixture
def cluster(chaos_db: str) -> Iterator[LocalCluster]:
    env = {"STEPSTREAM_CHAOS_DB": _plain(chaos_db)}
    with LocalCluster(chaos_db, CONFIG, 3, env=env, cwd=ROOT / "tests" / "graphs") as c:
        yield c


def _start_all(cluster: LocalCluster, run_ids: list[str], stop: threading.Event) -> None:
    """Start every run on a random live replica, retrying (same run id) when one is down."""
    stubs: dict[str, runs_pb2_grpc.RunServiceStub] = {}
    for run_id in run_ids:
        request = runs_pb2.StartRunRequest(graph_id="chaos", input_json='{"delay": 0.15}', run_id=run_id)
        while not stop.is_set():
            address = random.choice(cluster.addresses)
            if address not in stubs:
                stubs[address] = runs_pb2_grpc.RunServiceStub(grpc.insecure_channel(address))
            try:
                stubs[address].StartRun(request, timeout=10)
                break
            except grpc.RpcError:
                time.sleep(0.05)
        time.sleep(0.01)


def test_every_run_finishes_once_through_random_kills(cluster: LocalCluster, chaos_db: str) -> None:
    rng = random.Random(7)
    run_ids = [f"chaos-{i}-{uuid.uuid4().hex[:8]}" for i in range(RUNS)]
    stop = threading.Event()
    starter = threading.Thread(target=_start_all, args=(cluster, run_ids, stop), daemon=True)
    starter.start()
    kills = 0
    try:
        while starter.is_alive() or kills < 4:
            time.sleep(rng.uniform(1.0, 2.5))
            victim = rng.randrange(3)
            cluster.kill(victim)
            kills += 1
            time.sleep(rng.uniform(0.2, 1.5))
            cluster.restart(victim)
    finally:
        stop.set()
        starter.join(60)
    assert kills >= 4

    finished, effects, streams = asyncio.run(_outcome(chaos_db, run_ids))
    # Every run finishes.
    assert finished == {run_id: "succeeded" for run_id in run_ids}
    attempts_total = 0
    for run_id in run_ids:
        attempts, seqs, terminal = streams[run_id]
        attempts_total += attempts
        # Every stream is complete and in order: 1..N, ending with its one terminal event.
        assert seqs == list(range(1, len(seqs) + 1)), run_id
        assert terminal == ["run_finished"], run_id
        counts = collections.Counter(effects[run_id])
        assert set(counts) == {"fetch", "think", "write"}, run_id
        # Only a task a kill interrupted runs again: at most one per takeover of the run.
        repeated = sum(n - 1 for n in counts.values())
        assert repeated <= attempts - 1, (run_id, counts, attempts)
    assert attempts_total > RUNS, "no run was taken over: the kills hit nothing"


async def _outcome(
    url: str, run_ids: list[str]
) -> tuple[dict[str, str], dict[str, list[str]], dict[str, tuple[int, list[int], list[str]]]]:
    conn = await asyncpg.connect(_plain(url))
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            active = await conn.fetchval("SELECT count(*) FROM runs WHERE status IN ('queued', 'running')")
            if active == 0:
                break
            await asyncio.sleep(0.5)
        rows = await conn.fetch("SELECT run_id, status, attempt FROM runs WHERE run_id = ANY($1)", run_ids)
        finished = {r["run_id"]: r["status"] for r in rows}
        effects: dict[str, list[str]] = collections.defaultdict(list)
        for r in await conn.fetch("SELECT run_id, node FROM chaos_effects"):
            effects[r["run_id"]].append(r["node"])
        events: dict[str, list[tuple[int, str]]] = collections.defaultdict(list)
        for r in await conn.fetch("SELECT run_id, seq, kind FROM run_events ORDER BY run_id, seq"):
            events[r["run_id"]].append((r["seq"], r["kind"]))
        terminal_kinds = {"run_finished", "run_failed", "run_cancelled"}
        streams = {
            r["run_id"]: (
                r["attempt"],
                [seq for seq, _ in events[r["run_id"]]],
                [kind for _, kind in events[r["run_id"]] if kind in terminal_kinds],
            )
            for r in rows
        }
        return finished, effects, streams
    finally:
        await conn.close()
