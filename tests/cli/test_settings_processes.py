"""STEPSTREAM_PORT and STEPSTREAM_REPLICA on real processes: `serve` takes them; the processes
that `serve --workers` and `up` start get their own name and port instead of inheriting them."""

from __future__ import annotations

import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import grpc
import httpx
import pytest

from stepstream.server.process import HTTP_READY, READY, wait_serving
from stepstream.v1 import graphs_pb2, graphs_pb2_grpc
from tests.support import GRAPHS_CONFIG, ROOT

pytestmark = pytest.mark.process

LIMITS = ROOT / "tests" / "graphs" / "limits.toml"
FROM_ENV = "named-by-env"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _replica_answering(address: str) -> str:
    """The replica that answers one call on a connection of its own (the call's trailer)."""
    with grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        _, call = graphs_pb2_grpc.GraphServiceStub(channel).ListGraphs.with_call(
            graphs_pb2.ListGraphsRequest(), timeout=10
        )
        return dict(call.trailing_metadata())["stepstream-replica"]


def _environ(pid: int) -> dict[str, str]:
    raw = pathlib.Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().partition("=")[::2] for item in raw if item)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _cmdline(pid: int) -> str:
    return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


class Command:
    """`stepstream ARGS` with STEPSTREAM_PORT and STEPSTREAM_REPLICA set, until a line matches."""

    def __init__(self, tmp_path: pathlib.Path, *args: str, **variables: str) -> None:
        self.port = _free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **variables}
        env.update(STEPSTREAM_PORT=str(self.port), STEPSTREAM_REPLICA=FROM_ENV)
        env["STEPSTREAM_DB"] = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
        command = [sys.executable, "-m", "stepstream.cli.main", *args]
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT
        )
        self.lines: list[str] = []

    def until(self, pattern: str) -> re.Match[str]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"exited with {self.proc.wait()}: {''.join(self.lines)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def command(tmp_path: pathlib.Path) -> Iterator[list[Command]]:
    started: list[Command] = []
    yield started
    for each in started:
        each.stop()


def test_serve_listens_on_the_port_and_takes_the_name_the_environment_gives(
    tmp_path: pathlib.Path, command: list[Command]
) -> None:
    serve = Command(tmp_path, "serve", "--config", str(GRAPHS_CONFIG))
    command.append(serve)
    host, port = serve.until(READY.pattern).groups()
    assert int(port) == serve.port
    wait_serving(f"{host}:{port}")
    assert _replica_answering(f"{host}:{port}") == FROM_ENV


def test_serve_workers_share_the_port_under_names_of_their_own(
    tmp_path: pathlib.Path, command: list[Command]
) -> None:
    serve = Command(tmp_path, "serve", "--config", str(GRAPHS_CONFIG), "--workers", "2")
    command.append(serve)
    host, port = serve.until(READY.pattern).groups()
    assert int(port) == serve.port and "with 2 workers" in serve.lines[-1]
    address = f"{host}:{port}"
    wait_serving(address)
    # Each connection lands on a worker the kernel picks; 40 miss one of two in 2^-39.
    answered = {_replica_answering(address) for _ in range(40)}
    assert answered == {f"{FROM_ENV}-w1", f"{FROM_ENV}-w2"}
    workers = [p for p in _children(serve.proc.pid) if "spawn_main" in _cmdline(p)]
    assert len(workers) == 2
    # A worker's environment names the worker, not the supervisor it was spawned from.
    names = set()
    for pid in workers:
        environ = _environ(pid)
        assert environ["STEPSTREAM_PORT"] == port
        names.add(environ["STEPSTREAM_REPLICA"])
    assert names == answered


def test_up_gives_each_replica_its_own_name_and_port(tmp_path: pathlib.Path, command: list[Command]) -> None:
    up = Command(
        tmp_path, "up", "--replicas", "2", "--limits", str(LIMITS), STEPSTREAM_CONFIG=str(GRAPHS_CONFIG)
    )
    command.append(up)
    up.until("^cluster ready: ")
    serving = [re.match(r"(\S+) serving on (\S+) \(limiter (\S+)\)", line) for line in up.lines]
    replicas = {m.group(1): m.group(2) for m in serving if m}
    assert set(replicas) == {"replica-1", "replica-2"}
    ports = {int(address.rsplit(":", 1)[1]) for address in replicas.values()}
    assert len(ports) == 2 and up.port not in ports, "ports the parent chose, not STEPSTREAM_PORT"
    for name, address in replicas.items():
        assert _replica_answering(address) == name
    # Neither the servers nor their sidecars inherit the per-process variables; a sidecar
    # inherits none of the server's settings but who may call.
    children = _children(up.proc.pid)
    servers = [p for p in children if " serve " in _cmdline(p)]
    sidecars = [p for p in children if " ratelimiter " in _cmdline(p)]
    assert len(servers) == 2 and len(sidecars) == 2
    for pid in servers + sidecars:
        environ = _environ(pid)
        assert "STEPSTREAM_PORT" not in environ and "STEPSTREAM_REPLICA" not in environ
    for pid in servers:
        assert _environ(pid)["STEPSTREAM_CONFIG"] == str(GRAPHS_CONFIG)  # shared: inherited
    for pid in sidecars:
        assert "STEPSTREAM_CONFIG" not in _environ(pid)  # the sidecar's --config is its limits file


def _http_replica(url: str) -> str:
    """The replica that answers one HTTP call on a connection of its own."""
    with httpx.Client(base_url=url, timeout=10) as http:
        answer = http.get("/ok")
        answer.raise_for_status()
        return answer.headers["x-stepstream-replica"]


def test_serve_workers_share_the_http_port_too(tmp_path: pathlib.Path, command: list[Command]) -> None:
    http_port = _free_port()
    serve = Command(
        tmp_path, "serve", "--config", str(GRAPHS_CONFIG), "--workers", "2", "--http-port", str(http_port)
    )
    command.append(serve)
    serve.until(READY.pattern)
    urls = {m.group(1) for m in (HTTP_READY.search(line) for line in serve.lines) if m}
    assert urls == {f"http://127.0.0.1:{http_port}"}, serve.lines
    url = urls.pop()
    answered = {_http_replica(url) for _ in range(40)}
    assert answered == {f"{FROM_ENV}-w1", f"{FROM_ENV}-w2"}
    # Whichever worker takes a call, the run it starts is the other's to read (one database).
    with httpx.Client(base_url=url, timeout=30) as http:
        thread = http.post("/threads", json={}).json()["thread_id"]
        ran = http.post(f"/threads/{thread}/runs/wait", json={"assistant_id": "linear", "input": {"x": 1}})
        assert ran.status_code == 200, ran.text
        assert ran.json()["x"] == 4
    seen: dict[str, int] = {}
    for _ in range(20):
        with httpx.Client(base_url=url, timeout=10) as http:
            found = http.post("/threads/search", json={"limit": 5})
            seen[found.headers["x-stepstream-replica"]] = len(found.json())
    assert set(seen) == answered and set(seen.values()) == {1}


def test_up_serves_http_from_every_replica(tmp_path: pathlib.Path, command: list[Command]) -> None:
    http_port = _free_port()
    up = Command(
        tmp_path, "up", "--replicas", "2", "--http-port", str(http_port), STEPSTREAM_CONFIG=str(GRAPHS_CONFIG)
    )
    command.append(up)
    up.until("^cluster ready: ")
    serving = [re.match(r"(\S+) serving on \S+, HTTP (\S+)", line) for line in up.lines]
    urls = {m.group(1): m.group(2) for m in serving if m}
    assert urls == {
        "replica-1": f"http://127.0.0.1:{http_port}",
        "replica-2": f"http://127.0.0.1:{http_port + 1}",
    }, up.lines
    for name, url in urls.items():
        assert _http_replica(url) == name
    with httpx.Client(base_url=urls["replica-1"], timeout=30) as one:
        thread = one.post("/threads", json={"metadata": {"via": "replica-1"}}).json()
        ran = one.post(
            f"/threads/{thread['thread_id']}/runs/wait", json={"assistant_id": "linear", "input": {"x": 1}}
        )
        assert ran.status_code == 200, ran.text
    with httpx.Client(base_url=urls["replica-2"], timeout=30) as two:
        state = two.get(f"/threads/{thread['thread_id']}/state")
        assert state.status_code == 200 and state.json()["values"]["x"] == 4
        assert state.headers["x-stepstream-replica"] == "replica-2"
