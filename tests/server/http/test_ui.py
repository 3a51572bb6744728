"""The inspector's shell at /ui/ (server/http/ui.py): public with authentication on, the committed
bundle as is, and nothing else opened by it."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import httpx
import pytest

from stepstream.inspector import STATIC
from tests.server.http.door import Door, door

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    with door(pathlib.Path(tmp_path_factory.mktemp("ui"))) as server:
        yield server


def test_the_shell_is_public_and_is_the_committed_bundle(live: Door) -> None:
    with httpx.Client(base_url=live.url, timeout=10) as anonymous:
        page = anonymous.get("/ui/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.content == (STATIC / "index.html").read_bytes()
        for name, kind in (("app.js", "javascript"), ("app.css", "text/css")):
            asset = anonymous.get(f"/ui/{name}")
            assert asset.status_code == 200 and kind in asset.headers["content-type"]
            assert asset.content == (STATIC / name).read_bytes()
        # The assets are relative to /ui/: /ui is sent there.
        moved = anonymous.get("/ui")
        assert moved.status_code == 308 and moved.headers["location"] == "/ui/"


def test_the_shell_opens_no_data(live: Door) -> None:
    with httpx.Client(base_url=live.url, timeout=10) as anonymous:
        assert anonymous.get("/ui/missing.js").status_code == 404
        assert anonymous.get("/ui/../threads/search").status_code == 401
        # Paths that only start like the shell's are not public.
        assert anonymous.post("/uiextra", json={}).status_code == 401
        assert anonymous.post("/threads/search", json={}).status_code == 401
    with live.http() as alice:
        assert alice.post("/threads/search", json={}).status_code == 200
