"""Crons across replicas that die: 3 replicas on PostgreSQL, 20 crons due every second for
30 s while replicas are SIGKILLed and restarted at random (never all at once). Every due
time the crons should have had leaves exactly one fire record, and exactly one run."""

from __future__ import annotations

import asyncio
import math
import random
import signal
import threading
import time
from collections.abc import Iterator

import asyncpg
import grpc
import pytest
from google.protobuf import timestamp_pb2

from stepstream.server.cluster import LocalCluster
from stepstream.v1 import crons_pb2, crons_pb2_grpc
from tests.pgserver import create_database
from tests.support import GRAPHS_CONFIG, ROOT

pytestmark = [pytest.mark.process, pytest.mark.timeout(600)]

CRONS = 20
SECONDS = 30.0


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture
def cluster(postgres_url: str) -> Iterator[LocalCluster]:
    with LocalCluster(create_database(postgres_url), GRAPHS_CONFIG, 3, cwd=ROOT) as c:
        yield c


def _expected(spec: crons_pb2.CronSpec, created_at: float, end_at: float) -> set[float]:
    """The due times the cron should have had, computed here from its definition."""
    if spec.WhichOneof("schedule") == "cron":  # "* * * * * *": every whole second
        return {float(t) for t in range(math.floor(created_at) + 1, math.floor(end_at) + 1)}
    times, k = set(), 1
    while created_at + k * spec.interval_seconds <= end_at:
        times.add(round(created_at + k * spec.interval_seconds, 3))
        k += 1
    return times


async def _records(url: str, cron_ids: list[str]) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    conn = await asyncpg.connect(_plain(url))
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            pending = await conn.fetchval("SELECT count(*) FROM cron_fires WHERE outcome = 'pending'")
            active = await conn.fetchval("SELECT count(*) FROM runs WHERE status IN ('queued', 'running')")
            if pending == 0 and active == 0:
                break
            await asyncio.sleep(0.5)
        else:
            stalled = await conn.fetch(
                "SELECT run_id, status, replica, lease_expires_at - extract(epoch FROM now()) AS lease_left,"
                " attempt FROM runs WHERE status IN ('queued', 'running')"
            )
            activity = await conn.fetch(
                "SELECT state, now() - xact_start AS age, left(query, 200) AS query FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            raise AssertionError(
                f"runs never ended: {[dict(r) for r in stalled][:10]};"
                f" connections: {[dict(a) for a in activity]}"
            )
        # No transaction left open by a replica (one held across an await would stall the
        # others' claims behind its locks).
        stuck = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'"
            " AND xact_start < now() - interval '5 seconds'"
        )
        assert stuck == 0, f"{stuck} connections idle in a transaction for over 5 s"
        fires = await conn.fetch(
            "SELECT cron_id, due_at, outcome, run_id FROM cron_fires WHERE cron_id = ANY($1)", cron_ids
        )
        runs = await conn.fetch(
            "SELECT run_id, status, replica, lease_expires_at FROM runs WHERE run_id LIKE 'cron.%'"
        )
        return fires, runs
    finally:
        await conn.close()


def _kill_and_restart(cluster: LocalCluster, rng: random.Random, until: float) -> int:
    """SIGKILL a random live replica every second or two and restart it in the background
    (a restart takes seconds), always leaving at least one replica up; the kills made."""
    restarting: dict[int, threading.Thread] = {}
    kills = 0
    while time.time() < until:
        time.sleep(rng.uniform(0.3, 1.0))
        for index, thread in list(restarting.items()):
            if not thread.is_alive():
                del restarting[index]
        up = [i for i in range(3) if i not in restarting]
        if len(up) < 2:
            continue
        victim = rng.choice(up)
        cluster.kill(victim)
        kills += 1
        restarting[victim] = threading.Thread(target=cluster.restart, args=(victim,))
        restarting[victim].start()
    for thread in restarting.values():
        thread.join(120)
    return kills


def test_every_due_time_fires_once_through_random_kills(cluster: LocalCluster) -> None:
    rng = random.Random(25)
    stub = crons_pb2_grpc.CronServiceStub(grpc.insecure_channel(cluster.addresses[0]))
    end_at = time.time() + SECONDS + 2
    end = timestamp_pb2.Timestamp()
    end.FromNanoseconds(int(end_at * 1e9))
    crons: list[crons_pb2.Cron] = []
    for i in range(CRONS):
        spec = crons_pb2.CronSpec(graph_id="linear", input_json='{"x": 1}', end_at=end)
        if i % 2:
            spec.interval_seconds = 1.0
        else:
            spec.cron = "* * * * * *"
        crons.append(stub.CreateCron(crons_pb2.CreateCronRequest(spec=spec), timeout=10).cron)
    created = time.time()
    kills = _kill_and_restart(cluster, rng, end_at)
    # A restart takes seconds on a busy machine; up to two replicas are down at a time.
    assert kills >= 2, f"{kills} kills; the crons took {created - end_at + SECONDS + 2:.1f} s to create"

    killed = time.time()
    try:
        fires, runs = asyncio.run(_records(cluster.db_url, [c.cron_id for c in crons]))
    except AssertionError:
        for replica in cluster.replicas:
            print(f"--- {replica.name}:", "".join(replica.server.output[-40:]))
        raise
    settled = time.time()
    by_cron: dict[str, list[asyncpg.Record]] = {c.cron_id: [] for c in crons}
    for fire in fires:
        by_cron[fire["cron_id"]].append(fire)
    run_status = {r["run_id"]: r["status"] for r in runs}
    total = 0
    for cron in crons:
        expected = _expected(cron.spec, cron.created_at.ToNanoseconds() / 1e9, end_at)
        recorded = [f["due_at"] for f in by_cron[cron.cron_id]]
        # Exactly one record per due time: none missing, none doubled, none invented.
        assert sorted(recorded) == sorted(expected), cron.cron_id
        for fire in by_cron[cron.cron_id]:
            # A new session each time is a free session: every fire ran, one run each.
            assert fire["outcome"] == "ran", (cron.cron_id, fire["due_at"], fire["outcome"])
            assert run_status.get(fire["run_id"]) == "succeeded", fire["run_id"]
        total += len(expected)
    # One run per due time, and no run that is not a fire's.
    print(
        f"due times expected {total}, fire records {len(fires)}, runs {len(run_status)}, kills {kills};"
        f" created in {created - end_at + SECONDS + 2:.1f} s,"
        f" settled {settled - killed:.1f} s after the kills"
    )
    assert len(run_status) == total == len(fires)
    assert total >= CRONS * (SECONDS - 1)
    # Every replica stops on SIGTERM, within its drain grace (10 s) and a margin.
    for replica in cluster.replicas:
        replica.server.signal(signal.SIGTERM)
    for replica in cluster.replicas:
        replica.server.wait(30)
    print(f"stopped on SIGTERM in {time.time() - settled:.1f} s")
