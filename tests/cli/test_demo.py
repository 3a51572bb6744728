"""`stepstream demo` prints the inspector's URL and serves it (and the data behind it) while it runs."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

pytestmark = [pytest.mark.process, pytest.mark.timeout(240)]


def test_the_demo_serves_the_inspector_while_it_runs() -> None:
    command = [sys.executable, "-m", "stepstream.cli.main", "demo", "--sessions", "8", "--concurrency", "8"]
    demo = subprocess.Popen(
        [*command, "--linger", "120"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert demo.stdout is not None
    seen: list[str] = []
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = demo.stdout.readline()
            assert line, f"the demo ended before naming the inspector:\n{''.join(seen)}"
            seen.append(line)
            match = re.search(r"inspector: (http://127\.0\.0\.1:\d+/ui/)", line)
            url = match.group(1) if match else None
        assert url is not None, "".join(seen)
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200 and "stepstream inspector" in page.text
        base = url.removesuffix("/ui/")
        # The sessions the demo drives are there for the page to show.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            threads = httpx.post(base + "/threads/search", json={"limit": 50}, timeout=10).json()
            if len(threads) == 8:
                break
            time.sleep(0.5)
        assert len(threads) == 8, threads
        while "stays up" not in "".join(seen):
            line = demo.stdout.readline()
            assert line, "".join(seen)
            seen.append(line)
        assert httpx.get(url, timeout=10).status_code == 200
    finally:
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, "".join(seen) + rest
