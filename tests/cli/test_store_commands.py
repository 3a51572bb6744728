"""`stepstream store put|get|delete|search|namespaces` against a real server (authentication off)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.support import ServerProcess

pytestmark = pytest.mark.process


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("store-cli") / "db.sqlite"
    with ServerProcess(f"sqlite+aiosqlite:///{db}") as server:
        yield server.address


def cli(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STEPSTREAM_ADDRESS": address, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "stepstream.cli.main", "store", *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


def test_put_get_search_namespaces(address: str) -> None:
    root = f"cli{uuid.uuid4().hex[:8]}"
    put = cli(address, "put", f"{root}/u1", "tea", '{"text": "likes tea", "kind": "pref"}')
    assert put.returncode == 0, put.stderr
    assert cli(address, "put", f"{root}/u2", "rain", '{"text": "hates rain"}', "--ttl", "60").returncode == 0

    got = cli(address, "get", f"{root}/u1", "tea")
    assert got.returncode == 0 and json.loads(got.stdout) == {"text": "likes tea", "kind": "pref"}

    found = cli(address, "search", root, "--filter", '{"kind": "pref"}')
    assert found.returncode == 0, found.stderr
    rows = [line.split("\t") for line in found.stdout.splitlines()]
    assert rows[0][:3] == ["namespace", "key", "value"]
    assert [(r[0], r[1], json.loads(r[2])) for r in rows[1:]] == [
        (f"{root}/u1", "tea", {"text": "likes tea", "kind": "pref"})
    ]

    listed = cli(address, "namespaces", "--prefix", root)
    assert listed.stdout.split() == [f"{root}/u1", f"{root}/u2"]
    assert cli(address, "namespaces", "--prefix", root, "--max-depth", "1").stdout.split() == [root]

    assert cli(address, "delete", f"{root}/u2", "rain").returncode == 0
    assert cli(address, "get", f"{root}/u2", "rain").returncode == 1
    assert cli(address, "namespaces", "--prefix", root).stdout.split() == [f"{root}/u1"]


def test_absent_item_and_bad_input(address: str) -> None:
    root = f"cli{uuid.uuid4().hex[:8]}"
    missing = cli(address, "get", root, "nothing")
    assert missing.returncode == 1 and "no item 'nothing'" in missing.stderr
    dotted = cli(address, "put", f"{root}/a.b", "k", '{"text": "x"}')
    assert dotted.returncode == 1
    assert "INVALID_ARGUMENT" in dotted.stderr and "namespace" in dotted.stderr
    not_object = cli(address, "put", root, "k", "[1, 2]")
    assert not_object.returncode == 2 and "JSON object" in not_object.stderr
    bad_filter = cli(address, "search", root, "--filter", '{"n": {"$near": 1}}')
    assert bad_filter.returncode == 1 and "filter_json" in bad_filter.stderr
    assert cli(address, "namespaces", "--prefix", root).stdout.split() == []
