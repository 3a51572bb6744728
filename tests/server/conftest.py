"""The `api` fixture: a client of the session's shared server (tests/conftest.py), for the server's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.rpc import Api


@pytest.fixture
def api(server_address: str) -> Iterator[Api]:
    client = Api(server_address)
    yield client
    client.close()
