"""Sessions as users search them, through the Python SDK against a real `stepstream serve`:
metadata set, patched and searched; copies; stateless runs; streams whose client goes away.

`server_address` (tests/conftest.py) serves tests/graphs (see tests/server/api/test_session_search.py).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from stepstream.client import (
    Command,
    InvalidArgumentError,
    NotFoundError,
    RunStatus,
    SessionStatus,
    StepstreamClient,
)

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]


@pytest.fixture
async def client(server_address: str) -> AsyncIterator[StepstreamClient]:
    async with StepstreamClient(server_address, timeout=30) as c:
        yield c


async def ids(client: StepstreamClient, **filters: object) -> list[str]:
    return [s.session_id async for s in client.sessions.list(**filters)]  # type: ignore[arg-type]


async def test_metadata_patched_and_searched_with_paging(client: StepstreamClient) -> None:
    t = uuid.uuid4().hex[:12]
    a = await client.sessions.create("linear", metadata={"t": t, "tier": "gold"})
    b = await client.sessions.create("linear", metadata={"t": t, "tier": "free"})
    c = await client.sessions.create("ask", metadata={"t": t, "tier": "gold"})
    assert await ids(client, metadata={"t": t, "tier": "gold"}) == [c.session_id, a.session_id]
    assert await ids(client, metadata={"t": t}, graph_id="linear", ascending=True) == [
        a.session_id,
        b.session_id,
    ]

    patched = await client.sessions.patch(b.session_id, {"tier": "gold", "seen": 1})
    assert patched.metadata == {"t": t, "tier": "gold", "seen": 1}
    assert (await client.sessions.patch(b.session_id, {"seen": None})).metadata == {"t": t, "tier": "gold"}
    page = await client.sessions.list_page(metadata={"t": t, "tier": "gold"}, page_size=2)
    assert [s.session_id for s in page.items] == [c.session_id, b.session_id] and page.next_page_token
    rest = await client.sessions.list_page(
        metadata={"t": t, "tier": "gold"}, page_size=2, page_token=page.next_page_token
    )
    assert [s.session_id for s in rest.items] == [a.session_id] and not rest.next_page_token

    run = await client.runs.start(session_id=c.session_id, input={})
    assert (await client.runs.wait(run.run_id, timeout=60)).status == RunStatus.INTERRUPTED
    assert await ids(client, metadata={"t": t}, statuses=[SessionStatus.INTERRUPTED]) == [c.session_id]
    assert await ids(client, metadata={"t": t}, statuses=["idle"], sort_by="updated_at") == [
        b.session_id,
        a.session_id,
    ]

    with pytest.raises(NotFoundError):
        await client.sessions.patch(f"none-{t}", {"a": 1})
    with pytest.raises(InvalidArgumentError):
        await client.runs.start(session_id=a.session_id, input={}, on_completion="delete")
    assert (await client.sessions.get(a.session_id)).metadata == {"t": t, "tier": "gold"}


async def test_copy_stateless_and_disconnect(client: StepstreamClient) -> None:
    source = await client.sessions.create("ask")
    run = await client.runs.start(session_id=source.session_id, input={"question": "q"})
    await client.runs.wait(run.run_id, timeout=60)
    copy = await client.sessions.copy(source.session_id)
    done = await client.runs.start(session_id=copy.session_id, command=Command(resume="from copy"))
    assert (await client.runs.wait(done.run_id, timeout=60)).status == RunStatus.SUCCEEDED
    assert (await client.sessions.state(copy.session_id)).values == {"question": "q", "answer": "from copy"}
    assert (await client.sessions.state(source.session_id)).interrupts  # still waiting for its answer

    # Stateless: the run's session is gone once it ended.
    events = [e async for e in client.runs.stream("linear", {"x": 0}, on_completion="delete")]
    session_id = events[0].data.session_id  # type: ignore[attr-defined]
    for _ in range(100):
        try:
            await client.sessions.get(session_id)
        except NotFoundError:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the stateless run's session is still there")

    # A stream closed early cancels its run when asked, and leaves it running otherwise.
    for cancel, ends_as in ((True, RunStatus.CANCELLED), (False, RunStatus.SUCCEEDED)):
        stream = client.runs.stream("slow", {"steps": 10, "delay": 0.1}, cancel_on_disconnect=cancel)
        first = await anext(stream)
        await stream.aclose()
        assert (await client.runs.wait(first.run_id, timeout=60)).status == ends_as
