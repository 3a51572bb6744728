"""The rate limiter's faults under load: Redis stopped behind the sidecar (the sidecar's
on_store_failure), and the sidecar killed (the server's --ratelimiter-on-unavailable).

In "local" mode every run still succeeds; in "closed" mode runs whose nodes needed a
token during the outage fail cleanly with the reason, and none is lost or hangs; once
the store or sidecar is back, new runs succeed again.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Iterator

import pytest

from stepstream.v1 import runs_pb2
from tests.consistency import problems
from tests.ratelimiter.conftest import RedisServer, Sidecar
from tests.rpc import Api
from tests.support import ServerProcess
from tests.tally import settle

pytestmark = pytest.mark.process

RUNS = 6
CALLS_PER_RUN = 15
# One shared budget: 6 runs x 15 calls at 30/s take about 3 s, so the fault lands mid-load.
LIMIT = 'test-api = "30/s burst 1"'


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.close()


def _sidecar_config(tmp: pathlib.Path, redis_url: str, mode: str) -> pathlib.Path:
    config = tmp / f"limiter-{mode}.toml"
    store = f'redis_url = "{redis_url}"\non_store_failure = "{mode}"\n' if redis_url else ""
    config.write_text(f"{store}[limits]\n{LIMIT}\n")
    return config


def _load(api: Api) -> list[str]:
    return [api.start("limited", {"n": CALLS_PER_RUN}).run_id for _ in range(RUNS)]


@pytest.mark.parametrize("mode", ["local", "closed"])
def test_redis_stopped_under_load(mode: str, redis: RedisServer, tmp_path: pathlib.Path) -> None:
    sidecar = Sidecar(_sidecar_config(tmp_path, redis.url, mode))
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    server = ServerProcess(db_url, "--ratelimiter", sidecar.target)
    api = Api(server.start())
    try:
        runs = _load(api)
        time.sleep(1.0)
        redis.stop()
        tally = settle(api, runs)
        print(f"redis stopped, sidecar {mode}: {tally}")
        assert tally.lost == [], tally
        if mode == "local":
            assert tally.by_status == {"RUN_STATUS_SUCCEEDED": RUNS}, tally.errors
        else:
            assert tally.by_status.get("RUN_STATUS_FAILED", 0) >= 1, tally
            assert all("LimiterUnavailable" in e for e in tally.errors.values()), tally.errors
        redis.start()
        time.sleep(0.5)  # the sidecar tries its store again every store_retry_ms
        after = api.start("limited", {"n": 3})
        assert api.wait(after.run_id, timeout=60).status == runs_pb2.RUN_STATUS_SUCCEEDED
    finally:
        api.close()
        server.stop()
        sidecar.close()
    assert problems(db_url) == []


@pytest.mark.parametrize("mode", ["local", "closed"])
def test_sidecar_killed_under_load(mode: str, tmp_path: pathlib.Path) -> None:
    config = _sidecar_config(tmp_path, "", mode)
    sidecar = Sidecar(config)
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    server = ServerProcess(db_url, "--ratelimiter", sidecar.target, "--ratelimiter-on-unavailable", mode)
    api = Api(server.start())
    restarted = None
    try:
        runs = _load(api)
        time.sleep(1.0)
        sidecar.proc.kill()
        sidecar.proc.wait(10)
        tally = settle(api, runs)
        print(f"sidecar killed, server {mode}: {tally}")
        assert tally.lost == [], tally
        if mode == "local":
            assert tally.by_status == {"RUN_STATUS_SUCCEEDED": RUNS}, tally.errors
        else:
            assert tally.by_status.get("RUN_STATUS_FAILED", 0) >= 1, tally
            assert all("unreachable" in e for e in tally.errors.values()), tally.errors
        restarted = Sidecar(config, port=sidecar.port)
        time.sleep(1.5)  # the server tries the sidecar again after its retry interval
        after = api.start("limited", {"n": 3})
        done = api.wait(after.run_id, timeout=60)
        assert done.status == runs_pb2.RUN_STATUS_SUCCEEDED, done.error_message
    finally:
        api.close()
        server.stop()
        sidecar.close()
        if restarted is not None:
            restarted.close()
    assert problems(db_url) == []
