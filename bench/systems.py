"""The systems compared, each able to deploy itself and name the load client that drives it.

A deployment is whatever serves the graphs (nothing for in-process LangGraph,
whose load client is the system) plus the command and start request of its
load client, and the processes whose peak RSS is the system's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pathlib
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from bench.peers import envs
from bench.peers.servers import Aegra, LangGraphDev, free_port, wait_ok
from stepstream.server.cluster import LocalCluster
from stepstream.server.process import LimiterProcess, ServerProcess

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIG = ROOT / "bench" / "graphs" / "stepstream.json"
# The research APIs' limits as the bench's mock states them (harness.BENCH_API).
LIMITS = ROOT / "bench" / "limits.toml"
# `serve --workers` as one would run it on this machine: a server process per core.
WORKERS = max(2, os.cpu_count() or 1)
# The durability the peers run with: LangGraph's default, in its server and in-process savers
# alike (a run's next superstep starts while the last checkpoint commits). stepstream's own
# default, "sync", waits for that commit first.
DURABILITY = ("--durability", "async")


@dataclasses.dataclass
class Deployment:
    driver: list[str]
    start: dict[str, Any]
    # The serving processes; empty when the load client itself is the system.
    serving_pids: Callable[[], list[int]] = list


class Resources:
    """What systems share in one benchmark run, each made once when first needed."""

    def __init__(self, workdir: pathlib.Path, mockapi_url: str) -> None:
        self.workdir = workdir
        self.mockapi_url = mockapi_url
        self._postgres: Any = None
        self._postgres_error: str | None = None
        self._redis: contextlib.ExitStack | None = None
        self._redis_url: str | None = None
        self._venvs: dict[str, pathlib.Path | str] = {}
        self._lock = asyncio.Lock()

    async def venv(self, name: str) -> pathlib.Path:
        """The peer's venv; PeerUnavailable (with the first failure's reason) if it cannot be made."""
        async with self._lock:
            if name not in self._venvs:
                try:
                    self._venvs[name] = await asyncio.to_thread(envs.ensure, name)
                except envs.PeerUnavailable as exc:
                    self._venvs[name] = str(exc)
        found = self._venvs[name]
        if isinstance(found, str):
            raise envs.PeerUnavailable(found)
        return found

    async def database(self) -> str:
        """A new database on the run's PostgreSQL server (started on first use; durable settings)."""
        from tests.pgserver import PostgresServer, create_database

        async with self._lock:
            if self._postgres is None and self._postgres_error is None:
                try:
                    server = PostgresServer(durable=True)
                    await asyncio.to_thread(server.start)
                    self._postgres = server
                except Exception as exc:
                    self._postgres_error = f"PostgreSQL could not start: {str(exc).strip()[:200]}"
        if self._postgres_error:
            raise envs.PeerUnavailable(self._postgres_error)
        return await asyncio.to_thread(create_database, self._postgres.url)

    async def redis(self) -> str:
        """The run's Redis (started on first use); RuntimeError if redis-server is missing."""
        from bench.ratelimiter import redis_server

        async with self._lock:
            if self._redis is None:
                self._redis = contextlib.ExitStack()
                self._redis_url = await asyncio.to_thread(self._redis.enter_context, redis_server())
        if self._redis_url is None:
            raise RuntimeError("redis-server is not installed")
        return self._redis_url

    def close(self) -> None:
        if self._postgres is not None:
            self._postgres.stop()
        if self._redis is not None:
            self._redis.close()

    def fresh_dir(self, name: str) -> pathlib.Path:
        path = self.workdir / f"{name}-{time.monotonic_ns()}"
        path.mkdir(parents=True)
        return path


@dataclasses.dataclass(frozen=True)
class System:
    key: str
    label: str
    family: str  # "langgraph", "peer" or "stepstream": what its ratios are taken against
    # A new deployment per client concurrency (its settings follow the load).
    per_concurrency: bool = False
    # Scenarios it cannot run, and why.
    cannot: tuple[tuple[str, str], ...] = ()
    # Cells (scenario, clients) that only the full run measures: none of the aims reads them, and
    # the quick run must fit in 5 minutes.
    full_run_only: tuple[tuple[str, int], ...] = ()

    @property
    def venvs(self) -> tuple[str, ...]:
        """The peers' environments it needs."""
        return ()

    def cannot_run(self, scenario: str) -> str | None:
        return dict(self.cannot).get(scenario)

    def deploy(self, res: Resources, concurrency: int) -> contextlib.AbstractAsyncContextManager[Deployment]:
        raise NotImplementedError


def _inprocess_driver() -> list[str]:
    return [sys.executable, "-m", "bench.drivers.inprocess"]


def _sdk_driver(venv: pathlib.Path) -> list[str]:
    return [str(venv / "bin" / "python"), "-m", "bench.drivers.sdk_peer"]


@dataclasses.dataclass(frozen=True)
class InProcessLangGraph(System):
    saver: str = "none"

    @contextlib.asynccontextmanager
    async def deploy(self, res: Resources, concurrency: int) -> AsyncIterator[Deployment]:
        path = res.fresh_dir(self.key) / "checkpoints.db"
        yield Deployment(_inprocess_driver(), {"saver": self.saver, "sqlite_path": str(path)})


@dataclasses.dataclass(frozen=True)
class LangGraphServer(System):
    jobs: int | None = None  # None: as many as the clients

    @property
    def venvs(self) -> tuple[str, ...]:
        return ("langgraph-server",)

    @contextlib.asynccontextmanager
    async def deploy(self, res: Resources, concurrency: int) -> AsyncIterator[Deployment]:
        venv = await res.venv("langgraph-server")
        jobs = self.jobs or concurrency
        env = {"STEPSTREAM_MOCKAPI_URL": res.mockapi_url}
        server = LangGraphDev(venv, res.fresh_dir(self.key), env, jobs)
        await asyncio.to_thread(server.start)
        try:
            yield Deployment(_sdk_driver(venv), {"url": server.url, "threads": False}, server.serving_pids)
        finally:
            await asyncio.to_thread(server.stop)


@dataclasses.dataclass(frozen=True)
class AegraServer(System):
    @property
    def venvs(self) -> tuple[str, ...]:
        return ("aegra", "langgraph-server")  # the SDK load client lives in the latter

    @contextlib.asynccontextmanager
    async def deploy(self, res: Resources, concurrency: int) -> AsyncIterator[Deployment]:
        venv = await res.venv("aegra")
        client_venv = await res.venv("langgraph-server")
        db = await res.database()
        env = {"STEPSTREAM_MOCKAPI_URL": res.mockapi_url}
        server = Aegra(venv, res.fresh_dir(self.key), env, _plain_postgres_url(db))
        await asyncio.to_thread(server.start)
        try:
            # Stateless runs, as the other LangGraph-API servers are driven (Aegra serves them
            # since 0.9: a thread made and dropped per run).
            yield Deployment(
                _sdk_driver(client_venv), {"url": server.url, "threads": False}, server.serving_pids
            )
        finally:
            await asyncio.to_thread(server.stop)


def _plain_postgres_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it (a server's workers and sidecar)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in pathlib.Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return found


@dataclasses.dataclass(frozen=True)
class StepstreamSystem(System):
    backend: str = "sqlite"
    replicas: int = 1
    # Server processes of the one replica (`serve --workers`).
    workers: int = 1
    # Replicas each with a sidecar of their own, all on one Redis (`stepstream up --redis`),
    # instead of one sidecar for every replica.
    sidecars_on_redis: bool = False
    # Driven through LangGraph's HTTP API (`serve --http-port`) by the langgraph-sdk load client
    # the API peers are driven by, instead of through gRPC by stepstream's SDK.
    http: bool = False

    @property
    def venvs(self) -> tuple[str, ...]:
        return ("langgraph-server",) if self.http else ()  # the SDK load client lives there

    @contextlib.asynccontextmanager
    async def deploy(self, res: Resources, concurrency: int) -> AsyncIterator[Deployment]:
        workdir = res.fresh_dir(self.key)
        if self.backend == "sqlite":
            db = f"sqlite+aiosqlite:///{workdir / 'stepstream.db'}"
        else:
            db = await res.database()
        env = {"STEPSTREAM_MOCKAPI_URL": res.mockapi_url}
        # A short drain on SIGTERM: the clients are gone when a deployment is torn down.
        grace = ("--grace", "1")
        driver = [sys.executable, "-m", "bench.drivers.stepstream_driver"]
        if self.replicas == 1:
            args = ("--limits", str(LIMITS), "--workers", str(self.workers), *DURABILITY, *grace)
            http_port = free_port() if self.http else None
            if http_port is not None:
                args += ("--http-port", str(http_port))
            server = ServerProcess(db, CONFIG, *args, env=env, cwd=workdir)
            try:
                await asyncio.to_thread(server.start)
                pid = server.pid or 0
                start: dict[str, Any] = {"addresses": [server.address]}
                if http_port is not None:
                    url = f"http://127.0.0.1:{http_port}"
                    await asyncio.to_thread(wait_ok, url + "/ok")
                    driver = _sdk_driver(await res.venv("langgraph-server"))
                    # Stateless runs, as `langgraph dev` is driven: the server makes and drops
                    # a thread per run.
                    start = {"url": url, "threads": False}
                yield Deployment(driver, start, lambda: process_tree(pid))
            finally:
                await asyncio.to_thread(server.stop)
            return
        if self.http:
            raise NotImplementedError("the HTTP rows are single-replica deployments")
        if self.sidecars_on_redis:
            async with self._cluster_on_redis(
                res, db, driver, [*DURABILITY, *grace], env, workdir
            ) as deployment:
                yield deployment
            return
        # One sidecar for every replica: one budget per API for all of them (no Redis needed).
        limiter = LimiterProcess("--config", str(LIMITS), env=env, cwd=workdir)
        try:
            await asyncio.to_thread(limiter.start)
            serve_args = ["--ratelimiter", limiter.address, *DURABILITY, *grace]
            cluster = LocalCluster(db, CONFIG, self.replicas, serve_args=serve_args, env=env, cwd=workdir)
            try:
                await asyncio.to_thread(cluster.start)

                def pids() -> list[int]:
                    found = [r.server.pid for r in cluster.replicas]
                    return [p for p in [*found, limiter.pid] if p]

                yield Deployment(driver, {"addresses": cluster.addresses}, pids)
            finally:
                await asyncio.to_thread(cluster.stop)
        finally:
            await asyncio.to_thread(limiter.stop)

    @contextlib.asynccontextmanager
    async def _cluster_on_redis(
        self,
        res: Resources,
        db: str,
        driver: list[str],
        serve_args: list[str],
        env: dict[str, str],
        workdir: pathlib.Path,
    ) -> AsyncIterator[Deployment]:
        """As `stepstream up --limits --redis` runs it: every replica with its own sidecar."""
        redis_url = await res.redis()
        cluster = LocalCluster(
            db,
            CONFIG,
            self.replicas,
            limits=LIMITS,
            redis_url=redis_url,
            serve_args=serve_args,
            env=env,
            cwd=workdir,
        )
        try:
            await asyncio.to_thread(cluster.start)

            def pids() -> list[int]:
                found = [r.server.pid for r in cluster.replicas]
                found += [r.limiter.pid for r in cluster.replicas if r.limiter is not None]
                return [p for p in found if p]

            yield Deployment(driver, {"addresses": cluster.addresses}, pids)
        finally:
            await asyncio.to_thread(cluster.stop)


NO_CHECKPOINTER = (("research", "its clarification interrupt needs a checkpointer"),)

SYSTEMS: tuple[System, ...] = (
    # No aim reads these two: the quick run measures them on (a) only, to stay in its 5 minutes.
    InProcessLangGraph(
        "inproc-none",
        "LangGraph in-process, no checkpointer",
        "langgraph",
        cannot=NO_CHECKPOINTER,
        full_run_only=(("mapreduce", 256),),
    ),
    InProcessLangGraph(
        "inproc-memory",
        "LangGraph in-process, InMemorySaver",
        "langgraph",
        saver="memory",
        full_run_only=(("research", 32), ("mapreduce", 256)),
    ),
    InProcessLangGraph(
        "inproc-sqlite",
        "LangGraph in-process, AsyncSqliteSaver",
        "langgraph",
        saver="sqlite",
        full_run_only=(("research", 32),),
    ),
    LangGraphServer("lg-server-10", "LangGraph server (langgraph dev), 10 jobs/worker", "peer", jobs=10),
    LangGraphServer(
        "lg-server-matched",
        "LangGraph server (langgraph dev), jobs/worker = clients",
        "peer",
        per_concurrency=True,
        # A server of its own per client count: each of these cells would cost one more start
        # (and map-reduce at 256, some 16 s, would take the quick run past its 5 minutes).
        full_run_only=(("linear", 1), ("research", 32), ("mapreduce", 256)),
    ),
    AegraServer("aegra", "Aegra on PostgreSQL", "peer", full_run_only=(("research", 32),)),
    StepstreamSystem("stepstream-sqlite", "stepstream, SQLite", "stepstream"),
    StepstreamSystem(
        "stepstream-sqlite-workers",
        f"stepstream, SQLite, {WORKERS} workers",
        "stepstream",
        workers=WORKERS,
    ),
    StepstreamSystem("stepstream-pg", "stepstream, PostgreSQL", "stepstream", backend="postgresql"),
    # The same servers through LangGraph's HTTP API and langgraph-sdk, the client the peers
    # are driven by: one protocol and one client for the three servers.
    StepstreamSystem("stepstream-http-sqlite", "stepstream HTTP, SQLite", "stepstream", http=True),
    StepstreamSystem(
        "stepstream-http-sqlite-workers",
        f"stepstream HTTP, SQLite, {WORKERS} workers",
        "stepstream",
        workers=WORKERS,
        http=True,
    ),
    StepstreamSystem(
        "stepstream-http-pg", "stepstream HTTP, PostgreSQL", "stepstream", backend="postgresql", http=True
    ),
    StepstreamSystem(
        "stepstream-pg-2",
        "stepstream, PostgreSQL, 2 replicas",
        "stepstream",
        backend="postgresql",
        replicas=2,
    ),
    StepstreamSystem(
        "stepstream-cluster-3",
        "stepstream, PostgreSQL, 3 replicas + sidecars on Redis",
        "stepstream",
        backend="postgresql",
        replicas=3,
        sidecars_on_redis=True,
        # The row is for the shared limit across replicas: (c) in the quick run, all in the full.
        full_run_only=(("linear", 1), ("linear", 256), ("mapreduce", 256)),
    ),
)
