"""Crons and run webhooks in LangGraph's HTTP API through the pinned langgraph-sdk
(`client.crons`), against a live `stepstream serve --http-port` with API keys: a thread's cron
fires runs on the thread, stateless crons are searched and counted per tenant, changed and
deleted; bad schedules and refused webhooks are 422s with nothing stored."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.server.http.door import KEYS, Door, door

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]

HELLO = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    with door(pathlib.Path(tmp_path_factory.mktemp("crons-door"))) as server:
        yield server


@pytest.fixture
async def clients(live: Door) -> AsyncIterator[dict[str, LangGraphClient]]:
    made = {who: get_client(url=live.url, api_key=key) for who, key in KEYS.items()}
    yield made
    for sdk in made.values():
        await sdk.aclose()


async def _runs(sdk: LangGraphClient, thread_id: str, want: int) -> list[Any]:
    for _ in range(150):
        runs = [r for r in await sdk.runs.list(thread_id) if r["status"] == "success"]
        if len(runs) >= want:
            return runs
        await asyncio.sleep(0.2)
    return runs


async def test_a_thread_cron_fires_runs_on_the_thread(clients: dict[str, LangGraphClient]) -> None:
    alice, bob = clients["alice"], clients["bob"]
    thread = await alice.threads.create()
    cron: Any = await alice.crons.create_for_thread(
        thread["thread_id"], "chat", schedule="* * * * * *", input=HELLO, metadata={"tag": "t1"}
    )
    assert cron["thread_id"] == thread["thread_id"] and cron["enabled"] is True
    assert cron["schedule"] == "* * * * * *" and cron["next_run_date"]

    runs = await _runs(alice, thread["thread_id"], 2)
    assert len(runs) >= 2
    assert all(r["metadata"]["cron_id"] == cron["cron_id"] for r in runs)

    found = await alice.crons.search(thread_id=thread["thread_id"])
    assert [c["cron_id"] for c in found] == [cron["cron_id"]]
    assert await bob.crons.search(thread_id=thread["thread_id"]) == []
    paused: Any = await alice.crons.update(cron["cron_id"], enabled=False)
    assert paused["enabled"] is False and paused["next_run_date"] is None
    await alice.crons.delete(cron["cron_id"])
    assert await alice.crons.search(thread_id=thread["thread_id"]) == []


async def test_stateless_crons_searched_counted_per_tenant(clients: dict[str, LangGraphClient]) -> None:
    alice, bob = clients["alice"], clients["bob"]
    made: Any = await alice.crons.create("chat", schedule="0 9 * * 1", input=HELLO, timezone="Europe/Paris")
    assert made["thread_id"] is None and made["timezone"] == "Europe/Paris"
    # Mondays 09:00 in Paris.
    assert made["next_run_date"].endswith(("07:00:00+00:00", "08:00:00+00:00"))
    mine = await alice.crons.search(assistant_id="chat", limit=100)
    assert made["cron_id"] in [c["cron_id"] for c in mine]
    assert await alice.crons.count(assistant_id="chat") == len(mine)
    assert made["cron_id"] not in [c["cron_id"] for c in await bob.crons.search(limit=100)]
    moved: Any = await alice.crons.update(made["cron_id"], schedule="30 10 * * *")
    assert moved["schedule"] == "30 10 * * *"
    with pytest.raises(httpx.HTTPStatusError) as gone:
        await bob.crons.delete(made["cron_id"])
    assert gone.value.response.status_code == 404
    await alice.crons.delete(made["cron_id"])


async def test_bad_schedules_and_refused_webhooks_store_nothing(clients: dict[str, LangGraphClient]) -> None:
    alice = clients["alice"]
    thread = await alice.threads.create()
    before = await alice.crons.search(limit=1000)
    for kwargs in (
        {"schedule": "61 * * * *"},
        {"schedule": "* * * * *", "timezone": "Nowhere/Land"},
        {"schedule": "* * * * *", "webhook": "http://10.1.2.3/hook"},
    ):
        with pytest.raises(httpx.HTTPStatusError) as bad:
            await alice.crons.create("chat", input=HELLO, **kwargs)
        assert bad.value.response.status_code == 422
        assert "spec." in bad.value.response.text
    assert await alice.crons.search(limit=1000) == before

    for url in ("http://localhost:9/hook", "http://[::ffff:127.0.0.1]/hook", "http://169.254.169.254/"):
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await alice.runs.create(thread["thread_id"], "chat", input=HELLO, webhook=url)
        assert refused.value.response.status_code == 422
        assert "webhook" in refused.value.response.text
    assert await alice.runs.list(thread["thread_id"]) == []
