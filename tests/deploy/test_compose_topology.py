"""The compose topology as loopback processes, with the research assistant run through it.

deploy/compose.yaml cannot start here (no container engine), so the same
topology starts as processes: `stepstream up` migrates the database once and
starts three replicas named as the compose services are, each beside its own
`stepstream ratelimiter` sidecar, all sidecars on one Redis with the
deployment's limits file; one PostgreSQL; and nginx with deploy/nginx/nginx.conf
in front, its upstreams pointed at the replicas' loopback ports. The graphs come
from examples/ instead of the image's /app/examples.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import redis
import sqlalchemy as sa
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stepstream.cli.demo import Tally, one_session
from stepstream.client import StepstreamClient
from stepstream.mockapi import ARXIV, WIKIPEDIA
from stepstream.mockapi.runner import MockApiProcess, fetch_stats
from stepstream.server.storage.db import create_engine
from tests.deploy.balancer import NGINX_CONF, NginxBalancer, loopback_conf
from tests.deploy.manifests import DEPLOY, ROOT, option
from tests.pgserver import create_database
from tests.ratelimiter.conftest import RedisServer

pytestmark = pytest.mark.process

COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
LIMITS = DEPLOY / "kubernetes" / "base" / "config" / "limits.toml"
GRAPHS = ROOT / "examples" / "stepstream.json"
SESSIONS = 36
UP_LINE = re.compile(r"^(replica-\d+) serving on (\S+) \(limiter (\S+)\)$")


def compose_replicas() -> list[str]:
    return sorted(name for name in COMPOSE["services"] if name.startswith("replica-"))


@dataclasses.dataclass
class Topology:
    balancer: NginxBalancer
    db_url: str
    redis_url: str
    api_url: str
    replicas: dict[str, str]  # name: address
    limiters: dict[str, str]


def start_cluster(db_url: str, redis_url: str, api_url: str) -> tuple[subprocess.Popen[str], list[str]]:
    """`stepstream up` with the compose replicas' count and drain; its output up to "cluster ready"."""
    grace = option(COMPOSE["services"]["replica-1"]["command"], "--grace")
    command = [sys.executable, "-m", "stepstream.cli.main", "up", "--replicas", str(len(compose_replicas()))]
    command += ["--db", db_url, "--config", str(GRAPHS), "--limits", str(LIMITS), "--redis", redis_url]
    command += ["--grace", grace]
    env = {**os.environ, "STEPSTREAM_MOCKAPI_URL": api_url, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT
    )
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("cluster ready: "):
            return proc, lines
    raise RuntimeError("stepstream up exited before the cluster was ready:\n" + "\n".join(lines))


@pytest.fixture(scope="module")
def topology(postgres_url: str) -> Iterator[Topology]:
    db_url = create_database(postgres_url)
    redis_server = RedisServer()
    redis_server.start()
    try:
        with MockApiProcess() as api:
            proc, lines = start_cluster(db_url, redis_server.url, api.url)
            try:
                found = [m.groups() for m in map(UP_LINE.match, lines) if m]
                replicas = {name: address for name, address, _ in found}
                limiters = {name: limiter for name, _, limiter in found}
                balancer = NginxBalancer({f"{name}:50051": address for name, address in replicas.items()})
                balancer.start()
                try:
                    yield Topology(balancer, db_url, redis_server.url, api.url, replicas, limiters)
                finally:
                    balancer.stop()
            finally:
                proc.send_signal(signal.SIGTERM)  # every replica drains, then the sidecars stop
                assert proc.wait(90) == 0
    finally:
        redis_server.close()


def test_up_starts_the_compose_replicas_each_with_its_own_sidecar(topology: Topology) -> None:
    assert sorted(topology.replicas) == compose_replicas()
    assert len(set(topology.limiters.values())) == len(topology.replicas)
    assert all(address.startswith("127.0.0.1:") for address in topology.limiters.values())


def test_grpc_health_answers_through_the_balancer(topology: Topology) -> None:
    with grpc.insecure_channel(topology.balancer.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for _ in range(len(topology.replicas) * 2):
            reply = stub.Check(health_pb2.HealthCheckRequest(service="stepstream.v1.RunService"), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def drive(address: str, sessions: int) -> Tally:
    tally = Tally(sessions)
    async with StepstreamClient(address) as client:
        await asyncio.gather(*(one_session(client, i, tally) for i in range(sessions)))
    return tally


async def runs_by_replica(db_url: str) -> dict[str, int]:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(sa.text("SELECT replica, count(*) FROM runs GROUP BY replica"))
            return {str(replica): int(count) for replica, count in rows}
    finally:
        await engine.dispose()


async def test_research_assistant_through_the_balancer_on_three_replicas(topology: Topology) -> None:
    tally = await asyncio.wait_for(drive(topology.balancer.address, SESSIONS), 120)
    assert tally.failed == 0 and tally.done == SESSIONS
    assert len(tally.answers) == SESSIONS and all(tally.answers)

    # One client, one HTTP/2 connection to nginx, and still every replica executed
    # runs: nginx balances calls, not connections (a run executes where it starts).
    by_replica = await runs_by_replica(topology.db_url)
    assert set(by_replica) == set(topology.replicas), by_replica
    assert sum(by_replica.values()) == SESSIONS + tally.clarifying

    # Every search went through: two per source per session.
    stats: dict[str, Any] = (await fetch_stats(topology.api_url))["endpoints"]
    for endpoint in (WIKIPEDIA, ARXIV):
        assert stats[endpoint]["served"] == 2 * SESSIONS, stats[endpoint]
    # The grants came from the one budget in Redis: the sidecars ran their
    # reservation scripts there (without --redis each keeps its own, and none runs).
    shared = redis.Redis.from_url(topology.redis_url)
    try:
        commands = shared.info("commandstats")
    finally:
        shared.close()
    scripts = sum(commands.get(name, {}).get("calls", 0) for name in ("cmdstat_evalsha", "cmdstat_eval"))
    assert scripts > 0, commands


def test_balancer_config_rewrite_touches_only_the_addresses() -> None:
    upstreams = {f"{name}:50051": f"127.0.0.1:{4000 + i}" for i, name in enumerate(compose_replicas())}
    original = NGINX_CONF.read_text()
    rewritten = loopback_conf(original, upstreams, 5999)
    assert len(rewritten.splitlines()) == len(original.splitlines())
    changed = [
        new for old, new in zip(original.splitlines(), rewritten.splitlines(), strict=True) if old != new
    ]
    # The gRPC upstreams and listener, and the HTTP API's (one upstream per replica, a listener).
    assert len(changed) == 2 * (len(upstreams) + 1)
    assert all("127.0.0.1:" in line for line in changed)
