"""The browser side of the harness: the useStream page bundled, served from loopback, opened in Chromium.

The page (tests/server/http/page/) is installed from its lockfile (`npm ci`, node_modules kept
beside it and ignored by git) and bundled with the pinned esbuild into a folder of the test's
own; a throwaway HTTP server on 127.0.0.1 serves that folder. Chromium is Debian's
(/usr/bin/chromium, `make system-deps`), started with the flags that keep it from calling any
outside host, and every request to a host other than 127.0.0.1 is refused: nothing is
downloaded at test time (no `playwright install`).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import pathlib
import shutil
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator

from playwright.sync_api import BrowserContext, Playwright, Route

ROOT = pathlib.Path(__file__).resolve().parents[3]
PAGE = pathlib.Path(__file__).resolve().parent / "page"
CHROMIUM = pathlib.Path("/usr/bin/chromium")
# Headless, and none of Chromium's own calls home (updates, sync, field trials, QUIC probes).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]


def build_page(out: pathlib.Path) -> pathlib.Path:
    """`npm ci` (when the lockfile changed) and esbuild the page into `out`; returns `out`."""
    sys.path.insert(0, str(ROOT / "protos"))
    import toolchain  # the repository's pinned-npm helper (protos/toolchain.py)

    bin_dir = toolchain.npm_ci(PAGE)
    out.mkdir(parents=True, exist_ok=True)
    command = [
        str(bin_dir / "esbuild"),
        str(PAGE / "src" / "app.jsx"),
        "--bundle",
        "--platform=browser",
        "--format=iife",
        "--jsx=automatic",
        '--define:process.env.NODE_ENV="production"',
        f"--outfile={out / 'app.js'}",
        "--log-level=warning",
    ]
    done = subprocess.run(command, cwd=PAGE, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"esbuild failed on {PAGE / 'src' / 'app.jsx'}:\n{done.stderr[-2000:]}")
    shutil.copy(PAGE / "index.html", out / "index.html")
    return out


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def static_site(folder: pathlib.Path) -> Iterator[str]:
    """Serve `folder` on a free loopback port; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _loopback_only(route: Route) -> None:
    host = urllib.parse.urlsplit(route.request.url).hostname
    if host == "127.0.0.1":
        route.continue_()
    else:
        route.abort("blockedbyclient")


@contextlib.contextmanager
def chromium(playwright: Playwright, profile: pathlib.Path) -> Iterator[BrowserContext]:
    """Debian's Chromium with a fresh profile, reaching loopback only; fails if it is not installed."""
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: `make system-deps` installs Debian's chromium")
    context = playwright.chromium.launch_persistent_context(
        str(profile), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
    )
    try:
        context.route("**/*", _loopback_only)
        yield context
    finally:
        context.close()
