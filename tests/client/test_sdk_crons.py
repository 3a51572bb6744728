"""client.crons against a real `stepstream serve` process: create with next fire times,
fires that ran (each an ordinary run), pause/resume/update/list/delete, refusals."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from stepstream.client import CronFire, InvalidArgumentError, NotFoundError, RunStatus, StepstreamClient

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]


@pytest.fixture
async def client(server_address: str) -> AsyncIterator[StepstreamClient]:
    async with StepstreamClient(server_address, timeout=30) as c:
        yield c


async def _settled(client: StepstreamClient, cron_id: str, want: int) -> list[CronFire]:
    for _ in range(150):
        fires = [f async for f in client.crons.fires(cron_id) if f.outcome != "pending"]
        if len(fires) >= want:
            return fires
        await asyncio.sleep(0.2)
    return fires


async def test_a_cron_through_the_sdk(client: StepstreamClient) -> None:
    cron = await client.crons.create("* * * * * *", graph_id="linear", input={"x": 5}, timezone="Asia/Tokyo")
    assert cron.schedule == "* * * * * *" and cron.timezone == "Asia/Tokyo" and cron.input == {"x": 5}
    assert len(cron.next_fire_times) == 5
    now = datetime.now(UTC)
    assert all(t > now.replace(microsecond=0) for t in cron.next_fire_times)
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(cron.next_fire_times)] == [1.0] * 4

    fires = await _settled(client, cron.cron_id, 2)
    assert {f.outcome for f in fires} == {"ran"}
    for fire in fires:
        run = await client.runs.wait(fire.run_id)
        assert run.status is RunStatus.SUCCEEDED and run.values["x"] == 8  # type: ignore[index,call-overload]

    paused = await client.crons.pause(cron.cron_id)
    assert paused.paused and paused.next_fire_times == ()
    resumed = await client.crons.resume(cron.cron_id)
    assert not resumed.paused and len(resumed.next_fire_times) == 5
    updated = await client.crons.update(cron.cron_id, 7200, graph_id="linear", input={"x": 0})
    assert updated.schedule == 7200.0
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(updated.next_fire_times)]
    assert [round(g) for g in gaps] == [7200] * 4
    assert cron.cron_id in [c.cron_id async for c in client.crons.list()]
    await client.crons.delete(cron.cron_id)
    with pytest.raises(NotFoundError):
        await client.crons.get(cron.cron_id)


async def test_refusals_name_the_field(client: StepstreamClient) -> None:
    with pytest.raises(InvalidArgumentError) as bad:
        await client.crons.create("* * * * * * *", graph_id="linear")
    assert bad.value.field_violations[0].field == "spec.cron"
    with pytest.raises(InvalidArgumentError) as bad:
        await client.crons.create(60, graph_id="linear", timezone="Nowhere/Land")
    assert bad.value.field_violations[0].field == "spec.timezone"
    with pytest.raises(InvalidArgumentError) as bad:
        await client.runs.start("linear", {"x": 1}, webhook="http://127.0.0.1:9/hook")
    assert bad.value.field_violations[0].field == "webhook"
