"""The servers the HTTP-API harness points at, each started on a loopback port and known by its base URL.

`langgraph-dev` is LangGraph's own server (`langgraph dev`, in-memory runtime) from the bench's
pinned venv (bench/peers/langgraph-server.txt, built under build/peers on first use), serving
tests/graphs/http_graphs.py. `stepstream` is `stepstream serve --http-port`, the door that serves
LangGraph's API beside gRPC from the same core (server/http).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
from collections.abc import Callable, Iterator, Mapping

from bench.peers import envs
from bench.peers.servers import LangGraphDev, free_port

ROOT = pathlib.Path(__file__).resolve().parents[3]
GRAPHS_DIR = ROOT / "tests" / "graphs"
LANGGRAPH_JSON = GRAPHS_DIR / "langgraph.json"
# Background runs at once: the scenarios run side by side, each on its own thread.
JOBS = 16


@dataclasses.dataclass(frozen=True)
class HttpServer:
    """A running server: its base URL and the headers every call carries (an API key, if any)."""

    name: str
    url: str
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


class _HarnessLangGraphDev(LangGraphDev):
    """The bench's `langgraph dev` process, serving the harness graphs instead of the bench's."""

    def write_config(self, extra: Mapping[str, object] | None = None) -> pathlib.Path:
        config = json.loads(LANGGRAPH_JSON.read_text())
        # Graph paths resolve against the working folder: point them back into the repository.
        config["graphs"] = {
            gid: str(GRAPHS_DIR / target.removeprefix("./")) for gid, target in config["graphs"].items()
        }
        path = self.workdir / "langgraph.json"
        path.write_text(json.dumps(config, indent=2))
        return path


@contextlib.contextmanager
def langgraph_dev(workdir: pathlib.Path) -> Iterator[HttpServer]:
    """`langgraph dev` on a free port; fails (never skips) with the reason if its venv cannot be built."""
    try:
        venv = envs.ensure("langgraph-server")
    except envs.PeerUnavailable as exc:
        raise RuntimeError(
            f"cannot build LangGraph's server venv from bench/peers/langgraph-server.txt: {exc}"
        ) from exc
    server = _HarnessLangGraphDev(venv, workdir, {}, jobs=JOBS)
    with server:
        yield HttpServer("langgraph-dev", server.url)


@contextlib.contextmanager
def stepstream_http(workdir: pathlib.Path) -> Iterator[HttpServer]:
    """`stepstream serve --http-port P --config tests/graphs/langgraph.json` on SQLite (stepstream reads
    langgraph.json, paths relative to the file).

    Waits for the gRPC side as every stepstream test does, then for HTTP `/ok`.
    """
    import httpx

    from stepstream.server.process import ServerProcess

    port = free_port()
    db = f"sqlite+aiosqlite:///{workdir / 'stepstream.db'}"
    # The browser page is served from another loopback port: a cross-origin caller.
    args = ("--http-port", str(port), "--http-cors-origin", "*")
    with ServerProcess(db, LANGGRAPH_JSON, *args, cwd=workdir):
        url = f"http://127.0.0.1:{port}"
        httpx.get(url + "/ok", timeout=10).raise_for_status()
        yield HttpServer("stepstream", url)


# The servers every harness test runs against, by name (the fixture's parameters).
SERVERS: dict[str, Callable[[pathlib.Path], contextlib.AbstractContextManager[HttpServer]]] = {
    "langgraph-dev": langgraph_dev,
    "stepstream": stepstream_http,
}
