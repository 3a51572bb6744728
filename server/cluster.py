"""A local cluster on loopback ports: N replicas of `stepstream serve`, each with its own
rate-limiter sidecar, on one database (`stepstream up`, the scale-out tests, benchmarks)."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping, Sequence
from typing import Annotated

from pydantic import Field

from stepstream.cli.settings import Flag, Settings
from stepstream.server.process import LimiterProcess, ServerProcess
from stepstream.server.settings import ServerSettings
from stepstream.server.storage.db import async_url, upgrade


class ClusterSettings(Settings):
    """What `stepstream up` starts; each replica's name and port are its own, chosen here."""

    config_path: Annotated[str, Flag("--config")]
    """stepstream.json or langgraph.json naming the graphs."""
    db_url: Annotated[str, Flag("--db")]
    """SQLAlchemy URL every replica shares (PostgreSQL)."""
    replicas: Annotated[int, Field(ge=1)] = 3
    """Replicas to start."""
    limits_path: Annotated[str | None, Flag("--limits")] = None
    """Limits file: each replica gets a sidecar over it."""
    redis_url: Annotated[str | None, Flag("--redis")] = None
    """Redis URL the sidecars share (one budget)."""
    http_port: Annotated[int | None, Field(ge=1, le=65535)] = None
    """HTTP port of replica 1 (LangGraph's API, as `serve --http-port`); replica N serves on this
    port + N - 1, so each has its own. Unset: no HTTP listener."""
    shutdown_grace_seconds: Annotated[float, Flag("--grace")] = ServerSettings.model_fields[
        "shutdown_grace_seconds"
    ].default
    """Seconds each replica drains."""


@dataclasses.dataclass
class Replica:
    name: str
    server: ServerProcess
    limiter: LimiterProcess | None = None

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def http_url(self) -> str:
        return self.server.http_url


class LocalCluster:
    def __init__(
        self,
        db_url: str,
        config: str | pathlib.Path,
        replicas: int = 3,
        *,
        limits: str | pathlib.Path | None = None,
        redis_url: str | None = None,
        serve_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: str | pathlib.Path | None = None,
        http_port: int | None = None,
    ) -> None:
        self.db_url = async_url(db_url)
        self.http_port = http_port
        self.config = config
        self.count = replicas
        self.limits = limits
        self.redis_url = redis_url
        self.serve_args = tuple(serve_args)
        self.env = dict(env or {})
        self.cwd = cwd
        self.replicas: list[Replica] = []

    @property
    def addresses(self) -> list[str]:
        return [r.address for r in self.replicas]

    def start(self) -> list[str]:
        """Migrate the database once, then start every replica; their addresses."""
        upgrade(self.db_url)
        try:
            for index in range(self.count):
                self.replicas.append(self._start_replica(index))
        except BaseException:
            self.stop()
            raise
        return self.addresses

    def _start_replica(self, index: int, limiter: LimiterProcess | None = None) -> Replica:
        name = f"replica-{index + 1}"
        serve_args = ["--no-migrate", "--replica", name, *self.serve_args]
        if self.http_port is not None:
            # A restarted replica listens where it did, so its clients' URL stays valid.
            serve_args += ["--http-port", str(self.http_port + index)]
        if limiter is None and self.limits is not None:
            limiter_args = ["--config", str(self.limits)]
            if self.redis_url:
                limiter_args += ["--redis", self.redis_url]
            limiter = LimiterProcess(*limiter_args, env=self.env, cwd=self.cwd)
            limiter.start()
        if limiter is not None:
            serve_args += ["--ratelimiter", limiter.address]
        server = ServerProcess(self.db_url, self.config, *serve_args, env=self.env, cwd=self.cwd)
        try:
            server.start()
        except BaseException:
            if limiter is not None:
                limiter.stop()
            raise
        return Replica(name, server, limiter)

    def kill(self, index: int) -> None:
        """SIGKILL replica `index`'s server (its sidecar stays, as in a pod whose server crashed)."""
        self.replicas[index].server.kill()

    def restart(self, index: int) -> str:
        """Start replica `index`'s server again under the same name; its new address."""
        old = self.replicas[index]
        old.server.kill()
        self.replicas[index] = self._start_replica(index, old.limiter)
        return self.replicas[index].address

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every server (they drain), then the sidecars."""
        for replica in self.replicas:
            replica.server.stop(timeout)
            if replica.limiter is not None:
                replica.limiter.stop()
        self.replicas = []

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
