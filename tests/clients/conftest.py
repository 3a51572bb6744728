"""Fixtures: each language's client built once per session, and a server of the examples."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import grpc
import pytest

from stepstream.mockapi.runner import MockApiProcess
from stepstream.server.process import ServerProcess
from tests.clients.programs import BUILDERS, LANGUAGES, Program

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES_CONFIG = ROOT / "examples" / "stepstream.json"


@pytest.fixture(scope="session", params=LANGUAGES)
def program(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Program:
    language: str = request.param
    return BUILDERS[language](tmp_path_factory.mktemp(f"client-{language}"))


@pytest.fixture(scope="session")
def examples_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`stepstream serve` of the research assistant (examples/) over the mock APIs, as the demo runs it."""
    workdir = tmp_path_factory.mktemp("examples-server")
    with MockApiProcess() as api:
        db = f"sqlite+aiosqlite:///{workdir / 'examples.db'}"
        env = {"STEPSTREAM_MOCKAPI_URL": api.url}
        with ServerProcess(db, EXAMPLES_CONFIG, env=env, cwd=workdir) as server:
            yield server.address


@pytest.fixture
def examples_channel(examples_server: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(examples_server) as channel:
        yield channel


@pytest.fixture
def graphs_channel(server_address: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server_address) as channel:
        yield channel
