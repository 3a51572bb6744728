"""Fixtures of the limiter tests: a real redis-server per module, sidecar factories."""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator

import pytest

from tests.ratelimiter.procs import RedisServer, Sidecar


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def sidecars(tmp_path: pathlib.Path) -> Iterator[Callable[..., Sidecar]]:
    started: list[Sidecar] = []

    def start(config_text: str, *extra: str, name: str = "limiter.toml", port: int | None = None) -> Sidecar:
        config = tmp_path / name
        config.write_text(config_text)
        sidecar = Sidecar(config, extra, port)
        started.append(sidecar)
        return sidecar

    try:
        yield start
    finally:
        for sidecar in started:
            sidecar.close()
