"""Real processes for the limiter tests, started and stopped here: a throwaway
redis-server and sidecars, each on a free loopback port and stopped by its pid.

Test modules reach them only through fixtures, so they import nothing but the
package under test.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RedisServer:
    """redis-server on 127.0.0.1, no persistence; stop() and start() keep the port."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: `make system-deps` installs it")
        self.binary = binary
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="stepstream-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        args += ["--dir", self.dir, "--daemonize", "no", "--loglevel", "warning"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port, self.proc, "redis-server")

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Sidecar:
    """`python -m stepstream.ratelimiter` as a separate process."""

    def __init__(self, config: pathlib.Path, extra: Sequence[str] = (), port: int | None = None) -> None:
        self.port = port or free_port()
        args = [
            sys.executable,
            "-m",
            "stepstream.ratelimiter",
            "--config",
            str(config),
            "--port",
            str(self.port),
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.log = tempfile.NamedTemporaryFile(prefix="stepstream-sidecar-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*args, *extra], stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
        _wait_port(self.port, self.proc, f"sidecar (log {self.log.name})")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def output(self) -> str:
        return pathlib.Path(self.log.name).read_text()

    def stop(self) -> None:
        _stop(self.proc)

    def close(self) -> None:
        self.stop()
        self.log.close()
        os.unlink(self.log.name)


@pytest.fixture
def free_port_factory() -> Callable[[], int]:
    return free_port


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


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own, which it may stop and start."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()
