"""Fixtures of the inspector's browser tests: a live `stepstream serve --http-port` serving the
research assistant (against the mock APIs) and tests/inspector/graphs.py, and Debian's Chromium
opened on its /ui/ page (tests/server/http/browser.py: loopback only, nothing downloaded).

Screenshots go to the test's own folder, or to $STEPSTREAM_SCREENSHOTS (`make screenshots`
points it at docs/images/).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pathlib
from collections.abc import Callable, Iterator

import httpx
import pytest
from playwright.sync_api import Page, Playwright, sync_playwright

from bench.peers.servers import free_port
from stepstream.mockapi.runner import MockApiProcess
from stepstream.server.process import ServerProcess
from tests.server.http.browser import chromium
from tests.support import ROOT

HERE = pathlib.Path(__file__).resolve().parent
GRAPHS = {
    "research_assistant": str(ROOT / "examples" / "research_assistant" / "graph.py") + ":graph",
    "failing": str(HERE / "graphs.py") + ":failing",
    "steps": str(HERE / "graphs.py") + ":steps",
    "nested": str(ROOT / "tests" / "graphs" / "http_graphs.py") + ":nested",
    "slow_chat": str(ROOT / "tests" / "graphs" / "http_graphs.py") + ":slow_chat",
    "approve": str(ROOT / "tests" / "graphs" / "http_graphs.py") + ":approve",
}
LIMITS = ROOT / "examples" / "limits.toml"
API_KEY = "sk_inspector_writer"
TIMEOUT_MS = 30_000


@dataclasses.dataclass(frozen=True)
class Live:
    """A running server: the HTTP base URL, the key its calls need (if auth is on), its process."""

    url: str
    process: ServerProcess
    key: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.key} if self.key else {}

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=30)


def write_config(folder: pathlib.Path) -> pathlib.Path:
    path = folder / "stepstream.json"
    path.write_text(json.dumps({"graphs": GRAPHS}))
    return path


def write_principals(folder: pathlib.Path) -> pathlib.Path:
    path = folder / "principals.json"
    entry = {"sha256": hashlib.sha256(API_KEY.encode()).hexdigest(), "owner": "ops", "roles": ["writer"]}
    path.write_text(json.dumps({"api_keys": [entry]}))
    return path


@contextlib.contextmanager
def serve(
    workdir: pathlib.Path,
    mockapi_url: str,
    *extra: str,
    db: str | None = None,
    key: bool = False,
    env: dict[str, str] | None = None,
) -> Iterator[Live]:
    port = free_port()
    # The examples' limits, enforced by the in-process limiter (the rate-limits view shows them).
    args = ["--http-port", str(port), "--limits", str(LIMITS), *extra]
    if key:
        args += ["--auth-file", str(write_principals(workdir))]
    env = {"STEPSTREAM_MOCKAPI_URL": mockapi_url, **(env or {})}
    db_url = db or f"sqlite+aiosqlite:///{workdir / 'inspector.db'}"
    with ServerProcess(db_url, write_config(workdir), *args, env=env, cwd=workdir) as process:
        url = f"http://127.0.0.1:{port}"
        httpx.get(url + "/ok", timeout=10).raise_for_status()
        yield Live(url, process, API_KEY if key else None)


@pytest.fixture(scope="module")
def mockapi() -> Iterator[str]:
    with MockApiProcess() as api:
        yield api.url


@pytest.fixture(scope="module")
def live(mockapi: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with serve(tmp_path_factory.mktemp("inspector"), mockapi) as server:
        yield server


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture
def page(playwright: Playwright, tmp_path: pathlib.Path) -> Iterator[Page]:
    with chromium(playwright, tmp_path / "profile") as context:
        context.set_default_timeout(TIMEOUT_MS)
        page = context.pages[0] if context.pages else context.new_page()
        page.set_viewport_size({"width": 1280, "height": 900})
        yield page


@pytest.fixture
def shoot(tmp_path: pathlib.Path, page: Page) -> Iterator[Callable[..., pathlib.Path]]:
    """`shoot(name, whole=True)`: a screenshot of the page (or of the window only) into the test's
    folder (or $STEPSTREAM_SCREENSHOTS)."""
    chosen = os.environ.get("STEPSTREAM_SCREENSHOTS")
    folder = (ROOT / chosen) if chosen else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)

    def take(name: str, whole: bool = True) -> pathlib.Path:
        path = folder / f"inspector-{name}.png"
        page.screenshot(path=str(path), full_page=whole)
        return path

    yield take
