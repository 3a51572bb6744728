"""A live `stepstream serve --http-port` for the door's own tests, with API keys of two tenants
and a read-only caller (auth on, as in production)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import pathlib
from collections.abc import Iterator, Mapping

import httpx

from bench.peers.servers import free_port
from stepstream.server.process import ServerProcess
from tests.server.http.servers import LANGGRAPH_JSON

KEYS = {"alice": "sk_alice_writer", "bob": "sk_bob_writer", "reader": "sk_alice_reader"}


@dataclasses.dataclass(frozen=True)
class Door:
    url: str
    process: ServerProcess
    db_path: pathlib.Path

    def headers(self, who: str = "alice") -> dict[str, str]:
        return {"x-api-key": KEYS[who]}

    def http(self, who: str = "alice") -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers(who), timeout=30)


def _principals(path: pathlib.Path) -> None:
    entries = [
        {"sha256": hashlib.sha256(KEYS["alice"].encode()).hexdigest(), "owner": "alice", "roles": ["writer"]},
        {"sha256": hashlib.sha256(KEYS["bob"].encode()).hexdigest(), "owner": "bob", "roles": ["writer"]},
        {
            "sha256": hashlib.sha256(KEYS["reader"].encode()).hexdigest(),
            "owner": "alice",
            "roles": ["reader"],
        },
    ]
    path.write_text(json.dumps({"api_keys": entries}))


@contextlib.contextmanager
def door(
    workdir: pathlib.Path,
    *extra: str,
    config: pathlib.Path = LANGGRAPH_JSON,
    env: Mapping[str, str] | None = None,
) -> Iterator[Door]:
    port = free_port()
    auth = workdir / "principals.json"
    _principals(auth)
    db = workdir / "door.db"
    args = (
        "--http-port",
        str(port),
        "--auth-file",
        str(auth),
        "--http-cors-origin",
        "https://studio.example",
    )
    with ServerProcess(f"sqlite+aiosqlite:///{db}", config, *args, *extra, env=env, cwd=workdir) as process:
        url = f"http://127.0.0.1:{port}"
        httpx.get(url + "/ok", timeout=10).raise_for_status()
        yield Door(url, process, db)
