"""Fixtures of the HTTP-API harness: a LangGraph-API server by base URL, one per entry of SERVERS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server.http.servers import SERVERS, HttpServer


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "process: the test starts real server processes")


@pytest.fixture(scope="session", params=sorted(SERVERS))
def http_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HttpServer]:
    """A server speaking LangGraph's HTTP API on loopback (langgraph dev now; stepstream's door later)."""
    name: str = request.param
    with SERVERS[name](tmp_path_factory.mktemp(name)) as server:
        yield server
