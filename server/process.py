"""Start `stepstream serve` or `stepstream ratelimiter` as a child process on a loopback port
(the cluster command, demo, benchmarks, tests)."""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Collection, Mapping
from typing import Any, Self

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stepstream.cli.settings import env_var
from stepstream.ratelimiter.config import LimiterSettings
from stepstream.server.settings import PER_PROCESS, ServerSettings

READY = re.compile(r"stepstream serving .* on (\S+):(\d+)")
# What `serve --http-port` prints once LangGraph's HTTP API listens (before READY).
HTTP_READY = re.compile(r"stepstream HTTP API on (http://\S+)")
LIMITER_READY = re.compile(r"ratelimiter listening on (\S+):(\d+)")


def inherited_environment(drop: Collection[str]) -> dict[str, str]:
    """This process's environment without the variables in `drop` (a child is given those itself)."""
    return {key: value for key, value in os.environ.items() if key not in drop}


def _per_process() -> frozenset[str]:
    return frozenset(env_var(ServerSettings, name) for name in PER_PROCESS)


def _not_the_sidecars() -> frozenset[str]:
    # Of the server's variables a sidecar it starts shares only who may call (the same
    # principals and key set): its port, host, config file or TLS files are not the server's,
    # and the server passes what the sidecar needs by flag.
    shared = ("auth_file", "jwt_keys_file", "jwt_issuer", "jwt_audience")
    names = [name for name in LimiterSettings.model_fields if name not in shared]
    return _per_process() | {env_var(LimiterSettings, name) for name in names}


class ChildProcess:
    """A `stepstream` verb in a child process, ready once it prints its address.

    The child inherits this process's environment but for the STEPSTREAM_* variables that
    `dropped()` names (settings of this process that are not the child's: its replica name
    and port, at least); `env` is added as given.
    """

    name = "stepstream"
    ready = READY

    @classmethod
    def dropped(cls) -> frozenset[str]:
        return _per_process()

    def __init__(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        cwd: str | pathlib.Path | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        # TLS credentials of the health probe when the process serves TLS only.
        self.credentials = credentials
        self.args = args
        self.env = {**inherited_environment(self.dropped()), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.cwd = cwd
        self.proc: subprocess.Popen[str] | None = None
        self.address = ""
        self.output: list[str] = []

    def command(self) -> list[str]:
        return [sys.executable, "-m", "stepstream.cli.main", *self.args]

    def start(self, timeout: float = 60.0) -> str:
        """Start it and return "host:port" once it reports SERVING."""
        cmd = self.command()
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env, cwd=self.cwd
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.name} exited: {''.join(self.output)}")
            self.output.append(line)
            match = self.ready.search(line)
            if match:
                self.address = f"{match.group(1)}:{match.group(2)}"
                break
        else:
            self.kill()
            raise RuntimeError(f"{self.name} did not start in time")
        # Keep reading its output so a chatty server never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        wait_serving(self.address, credentials=self.credentials)
        return self.address

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (drain), then SIGKILL if it has not exited in time."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServerProcess(ChildProcess):
    name = "stepstream serve"

    def __init__(
        self,
        db_url: str,
        config: str | pathlib.Path,
        *args: str,
        env: Mapping[str, str] | None = None,
        cwd: str | pathlib.Path | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        super().__init__(*args, env=env, cwd=cwd, credentials=credentials)
        self.db_url = db_url
        self.config = config

    @property
    def http_url(self) -> str:
        """The base URL of its HTTP listener (LangGraph's API); "" when it serves none."""
        for line in self.output:
            match = HTTP_READY.search(line)
            if match:
                return match.group(1)
        return ""

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "stepstream.cli.main",
            "serve",
            "--port",
            "0",
            "--config",
            str(self.config),
            "--db",
            self.db_url,
            *self.args,
        ]


class LimiterProcess(ChildProcess):
    """`stepstream ratelimiter`, the sidecar."""

    name = "stepstream ratelimiter"
    ready = LIMITER_READY

    @classmethod
    def dropped(cls) -> frozenset[str]:
        return _not_the_sidecars()

    def command(self) -> list[str]:
        return [sys.executable, "-m", "stepstream.cli.main", "ratelimiter", "--port", "0", *self.args]


def wait_serving(
    address: str, timeout: float = 30.0, credentials: grpc.ChannelCredentials | None = None
) -> None:
    deadline = time.monotonic() + timeout
    channel = (
        grpc.insecure_channel(address) if credentials is None else grpc.secure_channel(address, credentials)
    )
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply: Any = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    raise RuntimeError(f"{address} never reported SERVING")
