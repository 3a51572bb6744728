"""Start and stop the mock API from code: in this process (tests) or as a child process (demo).

Both bind port 0 by default and report the port the kernel chose, so parallel
tests and demos never race for a fixed port.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from types import TracebackType
from typing import Any, Self

import httpx
from aiohttp import web

from stepstream.mockapi.app import create_app
from stepstream.mockapi.config import MockApiConfig, to_toml

READY_PREFIX = "mockapi listening on "


class MockApiServer:
    """The mock API on the running event loop: `async with MockApiServer(config) as api: api.url`."""

    def __init__(self, config: MockApiConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or MockApiConfig()
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> Self:
        # Binding the socket ourselves is how we learn the port when asked for port 0.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        # No access log: at thousands of requests a second it would cost more than the handlers.
        self._runner = web.AppRunner(create_app(self.config), access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class MockApiProcess:
    """The mock API as a child process: `with MockApiProcess(config) as api: api.url`.

    The child prints one ready line with its address on stdout and nothing else
    there, so the pipe never fills up while nobody reads it.
    """

    def __init__(
        self,
        config: MockApiConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout_s: float = 30.0,
        command: list[str] | None = None,
    ) -> None:
        self.config = config or MockApiConfig()
        # Default: the module, which loads nothing but the mock API; ["stepstream", "mockapi"] works too.
        self.command = command or [sys.executable, "-m", "stepstream.mockapi"]
        self.host = host
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self.url = ""
        self.returncode: int | None = None  # set once the child has exited
        self._proc: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> Self:
        # The whole config travels as a file, so every shape and option reaches the child as is;
        # the child has read it once it prints its ready line.
        with tempfile.NamedTemporaryFile("w", prefix="mockapi-", suffix=".toml") as file:
            file.write(to_toml(self.config))
            file.flush()
            self._proc = subprocess.Popen(
                [*self.command, "--host", self.host, "--port", str(self.port), "--config", file.name],
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            try:
                self.url = self._read_ready_line(self._proc)
            except BaseException:
                self.stop()
                raise
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def _read_ready_line(self, proc: subprocess.Popen[str]) -> str:
        assert proc.stdout is not None
        deadline = time.monotonic() + self.startup_timeout_s
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while (left := deadline - time.monotonic()) > 0:
                if not sel.select(left):
                    continue
                line = proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"mockapi exited during start-up with code {proc.wait()}")
                if line.startswith(READY_PREFIX):
                    return line[len(READY_PREFIX) :].strip()
        raise TimeoutError(f"mockapi did not start within {self.startup_timeout_s} s")

    def stop(self, grace_s: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.returncode = proc.returncode
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


async def fetch_stats(url: str) -> dict[str, Any]:
    """The counters at `GET /stats` of the mock API at `url`."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{url}/stats")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


async def reset_stats(url: str) -> dict[str, Any]:
    """Zero the counters, e.g. between the warm-up and the measured part of a demo."""
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{url}/stats/reset")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result
