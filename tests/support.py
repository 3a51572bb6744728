"""Real `stepstream serve` processes on loopback ports, for the tests that need a server."""

from __future__ import annotations

import pathlib

import grpc

from stepstream.server import process

ROOT = pathlib.Path(__file__).resolve().parent.parent
GRAPHS_CONFIG = ROOT / "tests" / "graphs" / "stepstream.json"


class ServerProcess(process.ServerProcess):
    """A server of the test graphs (tests/graphs) on a database of the test's own."""

    def __init__(
        self,
        db_url: str,
        *args: str,
        config: pathlib.Path = GRAPHS_CONFIG,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        super().__init__(db_url, config, *args, cwd=ROOT, credentials=credentials)
