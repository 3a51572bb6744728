"""Fixtures of the server's tests: the `api` client of the session's shared server
(tests/conftest.py), and the security suite's tenants with API keys."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.rpc import Api
from tests.security.conftest import tenants

__all__ = ["api", "tenants"]


@pytest.fixture
def api(server_address: str) -> Iterator[Api]:
    client = Api(server_address)
    yield client
    client.close()
