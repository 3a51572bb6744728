"""`stepstream serve --workers N`: worker processes sharing one port and one SQLite database."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from stepstream.client import StepstreamClient
from stepstream.client.pool import Lease
from tests.support import ROOT, ServerProcess

pytestmark = pytest.mark.process

LIMITS = ROOT / "tests" / "graphs" / "limits.toml"
# Enough connections that the kernel's spreading of them leaves no worker without one
# (all 16 on one of two workers: 2 in 65,536).
CONNECTIONS = 16


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _cmdline(pid: int) -> str:
    return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _workers(server: ServerProcess) -> list[int]:
    assert server.pid is not None
    return [p for p in _children(server.pid) if "spawn_main" in _cmdline(p)]


def _replicas(db: pathlib.Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT replica, count(*) FROM runs GROUP BY replica").fetchall())


async def _linear_run(client: StepstreamClient) -> str:
    """Stream one linear run; the kind of its last event."""
    last = ""
    async for event in client.runs.stream("linear", {"x": 0}, kinds=["tasks"]):
        last = event.kind
    return last


async def _linear_runs(address: str, count: int) -> list[str]:
    async with StepstreamClient(address, connections=CONNECTIONS) as client:
        return list(await asyncio.gather(*(_linear_run(client) for _ in range(count))))


Workers = tuple[ServerProcess, pathlib.Path]


@pytest.fixture
def two_workers(tmp_path: pathlib.Path) -> Iterator[Workers]:
    db = tmp_path / "db.sqlite"
    server = ServerProcess(f"sqlite+aiosqlite:///{db}", "--workers", "2", "--grace", "5")
    server.start()
    yield server, db
    server.stop()


def test_runs_spread_over_the_workers_of_one_port(two_workers: Workers) -> None:
    server, db = two_workers
    assert "with 2 workers" in "".join(server.output)
    assert len(_workers(server)) == 2
    outcomes = asyncio.run(_linear_runs(server.address, 64))
    assert outcomes == ["run_finished"] * 64
    by_replica = _replicas(db)
    assert sum(by_replica.values()) == 64
    # Each worker is a replica of its own, named after the server.
    assert len(by_replica) == 2 and all(name.endswith(("-w1", "-w2")) for name in by_replica)


def test_a_session_continues_on_whichever_worker_gets_the_call(two_workers: Workers) -> None:
    server, db = two_workers

    async def scenario() -> list[int]:
        async with StepstreamClient(server.address, connections=CONNECTIONS) as client:
            session = await client.sessions.create("linear")
            values = []
            # Calls rotate over the connections, so the runs land on both workers in turn.
            for _ in range(8):
                run = await client.runs.start("linear", {"x": 0}, session_id=session.session_id)
                done = await client.runs.wait(run.run_id, timeout=30)
                assert isinstance(done.values, dict)
                values.append(done.values["x"])
            return values

    assert asyncio.run(scenario()) == [3] * 8
    assert len(_replicas(db)) == 2


def test_a_worker_that_dies_is_replaced_and_the_server_keeps_serving(two_workers: Workers) -> None:
    server, _ = two_workers
    victim = _workers(server)[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = _workers(server)
        if len(workers) == 2 and victim not in workers:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"worker {victim} was not replaced: {_workers(server)}")
    assert server.proc is not None and server.proc.poll() is None
    outcomes = asyncio.run(_linear_runs(server.address, 32))
    assert outcomes == ["run_finished"] * 32


def test_sigterm_stops_every_worker(tmp_path: pathlib.Path) -> None:
    server = ServerProcess(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", "--workers", "2", "--grace", "2")
    server.start()
    workers = _workers(server)
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0
    for pid in workers:
        assert not pathlib.Path(f"/proc/{pid}").exists() or "zombie" in _status(pid)


def _status(pid: int) -> str:
    try:
        return pathlib.Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"


def test_workers_share_one_rate_limit_budget(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "db.sqlite"
    server = ServerProcess(f"sqlite+aiosqlite:///{db}", "--workers", "2", "--limits", str(LIMITS))
    server.start()
    try:
        # One sidecar for both workers: each holding the limits itself would allow twice the rate.
        assert any("ratelimiter" in _cmdline(p) for p in _children(server.pid or 0))

        async def scenario() -> list[float]:
            async with StepstreamClient(server.address, connections=CONNECTIONS) as client:
                runs = [await client.runs.start("limited", {"n": 10}) for _ in range(6)]
                granted: list[float] = []
                for run in runs:
                    done = await client.runs.wait(run.run_id, timeout=60)
                    assert done.status == "succeeded", done.error_message
                    assert isinstance(done.values, dict)
                    granted += done.values["granted_at"]
                return granted

        granted = sorted(asyncio.run(scenario()))
        assert len(_replicas(db)) == 2
        assert len(granted) == 60
        # 20/s burst 1 (tests/graphs/limits.toml) for both workers together; +1 for the read delay.
        for window in (0.5, 1.0):
            most = max(sum(1 for t in granted[i:] if t < start + window) for i, start in enumerate(granted))
            assert most <= 20 * window + 1 + 1
    finally:
        server.stop()


def test_bad_worker_counts_and_taken_ports_are_refused(tmp_path: pathlib.Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    base = [sys.executable, "-m", "stepstream.cli.main", "serve", "--db", db]
    zero = subprocess.run([*base, "--workers", "0"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert zero.returncode == 2 and "--workers" in zero.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [*base, "--workers", "2", "--port", str(port)]
        busy = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert busy.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in busy.stderr


def test_the_sdk_opens_the_connections_it_is_asked_for(two_workers: Workers) -> None:
    server, _ = two_workers
    port = int(server.address.rsplit(":", 1)[1])

    async def scenario() -> int:
        async with StepstreamClient(server.address, connections=4) as client:
            for _ in range(8):
                await client.graphs.list()
            return _established_to(port)

    assert asyncio.run(scenario()) == 4


def test_the_sdk_learns_each_connections_worker_and_balances_calls_over_workers(
    two_workers: Workers,
) -> None:
    server, db = two_workers

    async def scenario() -> tuple[list[str], list[str]]:
        async with StepstreamClient(server.address, connections=CONNECTIONS) as client:
            endpoints = client._pool.endpoints
            # Each call's trailer names the worker that answered: streams and unary calls.
            for _ in range(4):
                ended = await asyncio.gather(*(_linear_run(client) for _ in range(CONNECTIONS)))
                assert ended == ["run_finished"] * CONNECTIONS
                await asyncio.gather(*(client.graphs.list() for _ in range(CONNECTIONS)))
            learned = [e.replica for e in endpoints]
            # A worker with calls in flight on one of its connections gets no new call on
            # another of its idle ones while the other worker has fewer.
            busy_worker = endpoints[0].replica
            leases = [Lease(endpoints[0]) for _ in range(3)]
            chosen = [client._pool.order()[0].replica for _ in range(len(endpoints))]
            for lease in leases:
                lease.release()
            return learned, [busy_worker, *chosen]

    learned, (busy_worker, *chosen) = asyncio.run(scenario())
    workers = set(_replicas(db))
    assert len(workers) == 2 and set(learned) == workers, (learned, workers)
    assert chosen == [next(iter(workers - {busy_worker}))] * len(chosen)


def test_old_connections_are_replaced_without_cutting_a_call(tmp_path: pathlib.Path) -> None:
    """With a connection age, clients reconnect (and land on a worker anew); streams finish."""
    db = tmp_path / "db.sqlite"
    server = ServerProcess(f"sqlite+aiosqlite:///{db}", "--workers", "2", "--max-connection-age", "0.5")
    server.start()
    port = int(server.address.rsplit(":", 1)[1])

    async def scenario() -> tuple[str, int, set[int]]:
        async with StepstreamClient(server.address, connections=1) as client:

            async def slow_run() -> str:
                last = ""
                # Eight steps of 0.3 s: the stream outlives several connection ages.
                async for event in client.runs.stream("slow", {"steps": 8, "delay": 0.3}):
                    last = event.kind
                return last

            run = asyncio.create_task(slow_run())
            calls, ports = 0, set()
            while not run.done():
                await client.graphs.list()
                calls += 1
                ports |= _client_ports(port)
                await asyncio.sleep(0.1)
            return await run, calls, ports

    try:
        last, calls, ports = asyncio.run(scenario())
    finally:
        server.stop()
    assert last == "run_finished"
    assert calls >= 10
    # The slow run's connection, and at least one made after an age had passed.
    assert len(ports) >= 2, ports


def _client_ports(port: int) -> set[int]:
    """Local ports of this machine's ESTABLISHED TCP connections to `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in pathlib.Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[3] == "01":
                found.add(int(fields[1].rsplit(":", 1)[1], 16))
    return found


def _established_to(port: int) -> int:
    """Client-side TCP connections to `port` on this machine (state ESTABLISHED)."""
    return len(_client_ports(port))
