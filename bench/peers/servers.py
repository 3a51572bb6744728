"""The peers' servers as child processes: LangGraph's own server (`langgraph dev`) and Aegra.

Each runs from its own venv (bench/peers/envs.py), offline, on a free loopback
port, in a fresh working folder, serving the benchmark graphs from this
repository by absolute path. Each is started in its own process group and
stopped by that group's id: `aegra serve` runs uvicorn as a child and does not
pass signals on.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from typing import IO

import httpx

from bench.peers.envs import PeerUnavailable

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
GRAPHS = {
    "linear": ROOT / "bench" / "graphs" / "graphs.py:linear",
    "mapreduce": ROOT / "bench" / "graphs" / "graphs.py:mapreduce",
    "waiting": ROOT / "bench" / "graphs" / "graphs.py:waiting",
    "research_assistant": ROOT / "examples" / "research_assistant" / "graph.py:graph",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ok(url: str, timeout: float = 30.0) -> None:
    """Until `url` answers 200 (a server's HTTP listener may open after its gRPC one)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2) as http:
        while time.monotonic() < deadline:
            try:
                if http.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise PeerUnavailable(f"{url} did not answer 200 within {timeout:.0f} s")


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in pathlib.Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(p) for p in task.read_text().split()]
    return found


class PeerProcess:
    name = "peer"
    ready_path = "/"

    def __init__(self, venv: pathlib.Path, workdir: pathlib.Path, env: Mapping[str, str]) -> None:
        self.venv = venv
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # A peer imports only its own venv: stepstream is not there, so the research
        # assistant's limiter hook finds no limiter (examples/research_assistant/research_apis.py).
        inherited = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self.env = {**inherited, **env, "PYTHONUNBUFFERED": "1"}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def write_config(self, extra: Mapping[str, object] | None = None) -> pathlib.Path:
        config = {"graphs": {gid: str(target) for gid, target in GRAPHS.items()}, **(extra or {})}
        path = self.workdir / f"{self.name}.json"
        path.write_text(json.dumps(config, indent=2))
        return path

    def start(self, timeout: float = 120.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = (self.workdir / f"{self.name}.log").open("wb")
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.workdir,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise PeerUnavailable(f"{self.name} exited at start: {self.log_tail()}")
                try:
                    if http.get(self.url + self.ready_path).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        self.stop()
        raise PeerUnavailable(f"{self.name} did not answer {self.ready_path} within {timeout:.0f} s")

    def log_tail(self, lines: int = 3) -> str:
        text = (self.workdir / f"{self.name}.log").read_text(errors="replace")
        return " | ".join(text.strip().splitlines()[-lines:])[-400:]

    def serving_pids(self) -> list[int]:
        assert self.proc is not None
        return [self.proc.pid]

    def stop(self, timeout: float = 20.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if proc is not None and proc.returncode is None:
            proc.wait(timeout)
        if self.log is not None:
            self.log.close()

    def __enter__(self) -> PeerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LangGraphDev(PeerProcess):
    """`langgraph dev` (in-memory runtime), one process; `jobs` background runs at once."""

    name = "langgraph-dev"
    ready_path = "/ok"

    def __init__(self, venv: pathlib.Path, workdir: pathlib.Path, env: Mapping[str, str], jobs: int) -> None:
        super().__init__(venv, workdir, env)
        self.jobs = jobs
        self.env.update(
            {
                # Dev mode pickles its state to ./.langgraph_api and reloads it at start: not here.
                "LANGGRAPH_DISABLE_FILE_PERSISTENCE": "true",
                "LANGSMITH_TRACING": "false",
                "LANGCHAIN_TRACING_V2": "false",
                "LANGGRAPH_CLI_NO_ANALYTICS": "1",
                "LOG_LEVEL": "WARNING",
            }
        )

    def command(self) -> list[str]:
        config = self.write_config({"dependencies": ["."]})
        return [
            str(self.venv / "bin" / "langgraph"),
            "dev",
            "--no-browser",
            "--no-reload",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--config",
            str(config),
            "--n-jobs-per-worker",
            str(self.jobs),
        ]


class Aegra(PeerProcess):
    """`aegra serve` (one uvicorn process) on a PostgreSQL database; it migrates it at start."""

    name = "aegra"
    ready_path = "/health"

    def __init__(
        self, venv: pathlib.Path, workdir: pathlib.Path, env: Mapping[str, str], db_url: str
    ) -> None:
        super().__init__(venv, workdir, env)
        self.env.update({"DATABASE_URL": db_url, "LOG_LEVEL": "WARNING"})

    def command(self) -> list[str]:
        config = self.write_config()
        host = ["--host", "127.0.0.1", "--port", str(self.port)]
        return [str(self.venv / "bin" / "aegra"), "serve", *host, "-c", str(config)]

    def serving_pids(self) -> list[int]:
        # The launcher only waits for its uvicorn child: the child is the server.
        assert self.proc is not None
        return children(self.proc.pid) or [self.proc.pid]
