"""Shared fixtures: a real server process on a loopback port, serving tests/graphs."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from tests.pgserver import PostgresServer
from tests.support import ServerProcess


@pytest.fixture(scope="session")
def server_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: pathlib.Path = tmp_path_factory.mktemp("server") / "stepstream.db"
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(scope="session")
def server_process(server_db: str) -> Iterator[ServerProcess]:
    server = ServerProcess(server_db)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def server_address(server_process: ServerProcess) -> str:
    return server_process.address


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster for the whole session; never skipped (fails without binaries)."""
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """Admin URL (asyncpg) of the session's PostgreSQL server: tests create their own databases."""
    return postgres_server.url
