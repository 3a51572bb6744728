"""The HTTP door through the pinned langgraph-sdk, against a live `stepstream serve --http-port`:
assistants, threads, state and history, every stream mode, subgraphs, interrupts answered with
Command(resume=...), join after a dropped connection, cancel, wait, the multitask strategies."""

from __future__ import annotations

import asyncio
import pathlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.server.http.door import KEYS, Door, door

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]

HELLO: Any = {"messages": [{"role": "user", "content": "hello"}]}
NAMESPACE = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    with door(pathlib.Path(tmp_path_factory.mktemp("door"))) as server:
        yield server


@pytest.fixture
async def client(live: Door) -> AsyncIterator[LangGraphClient]:
    sdk = get_client(url=live.url, api_key=KEYS["alice"])
    yield sdk
    await sdk.aclose()


async def _status(call: Any) -> int:
    """The HTTP status a failing SDK call got."""
    try:
        await call
    except httpx.HTTPStatusError as exc:
        return exc.response.status_code
    raise AssertionError("the call succeeded")


async def _events(parts: Any) -> list[Any]:
    return [part async for part in parts]


async def _until_running(client: LangGraphClient, thread_id: str, run_id: str) -> None:
    for _ in range(400):
        if (await client.runs.get(thread_id, run_id))["status"] == "running":
            state = await client.threads.get_state(thread_id)
            if isinstance(state["values"], dict) and "ticks" in state["values"]:
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the run never started")


async def test_assistants_one_per_graph_by_id_or_name(client: LangGraphClient) -> None:
    found = await client.assistants.search(limit=50)
    assert {a["graph_id"]: a["assistant_id"] for a in found} == {
        g: str(uuid.uuid5(NAMESPACE, g))
        for g in ("approve", "chat", "nested", "remember", "slow", "slow_chat")
    }
    by_name = await client.assistants.get("chat")
    assert by_name == await client.assistants.get(str(uuid.uuid5(NAMESPACE, "chat")))
    schemas = await client.assistants.get_schemas("chat")
    assert schemas["graph_id"] == "chat"
    assert {"input_schema", "output_schema", "state_schema"} <= set(schemas)
    graph = await client.assistants.get_graph("chat")
    assert {n["id"] for n in graph["nodes"]} >= {"prepare", "model"}
    assert await client.assistants.count(graph_id="nested") == 1


async def test_threads_create_patch_search_delete(client: LangGraphClient) -> None:
    tag = uuid.uuid4().hex
    made = [await client.threads.create(metadata={"suite": tag, "n": n}) for n in range(3)]
    assert all(t["status"] == "idle" and t["values"] is None for t in made)
    await client.runs.wait(made[0]["thread_id"], "chat", input=HELLO)
    ran = await client.threads.get(made[0]["thread_id"])
    assert ran["metadata"]["graph_id"] == "chat" and ran["values"]["turns"] == 1
    patched = await client.threads.update(made[1]["thread_id"], metadata={"reviewed": True})
    assert patched["metadata"] == {"suite": tag, "n": 1, "reviewed": True}
    found = await client.threads.search(metadata={"suite": tag})
    assert [t["thread_id"] for t in found] == [t["thread_id"] for t in reversed(made)]
    assert len(await client.threads.search(metadata={"suite": tag, "n": 2})) == 1
    assert len(await client.threads.search(metadata={"suite": tag}, status="idle", limit=2)) == 2
    assert await client.threads.count(metadata={"suite": tag}) == 3
    await client.threads.delete(made[2]["thread_id"])
    assert await client.threads.count(metadata={"suite": tag}) == 2
    assert await _status(client.threads.get(made[2]["thread_id"])) == 404


@pytest.mark.parametrize(
    ("mode", "names"),
    [
        ("values", ["metadata", "values", "values", "values"]),
        ("updates", ["metadata", "updates", "updates"]),
        ("custom", ["metadata", "custom"]),
        ("tasks", ["metadata", "tasks", "tasks", "tasks", "tasks"]),
        ("checkpoints", ["metadata", "checkpoints", "checkpoints", "checkpoints", "checkpoints"]),
    ],
)
async def test_each_stream_mode(client: LangGraphClient, mode: str, names: list[str]) -> None:
    thread = await client.threads.create()
    parts = await _events(client.runs.stream(thread["thread_id"], "chat", input=HELLO, stream_mode=mode))  # type: ignore[arg-type]
    assert [p.event for p in parts] == names
    assert parts[0].data["attempt"] == 1
    if mode == "updates":
        assert parts[1].data == {"prepare": {"turns": 1}}
        assert parts[2].data["model"]["messages"][0]["content"] == "You said: hello. word0 word1 word2"
    if mode == "custom":
        assert parts[1].data == {"stage": "prepare", "seen": 1}
    if mode == "checkpoints":
        assert [p.data["metadata"]["step"] for p in parts[1:]] == [-1, 0, 1, 2]
        assert [p.data["next"] for p in parts[1:]] == [["__start__"], ["prepare"], ["model"], []]


async def test_messages_modes_stream_tokens(client: LangGraphClient) -> None:
    thread = await client.threads.create()
    parts = await _events(
        client.runs.stream(thread["thread_id"], "chat", input=HELLO, stream_mode="messages-tuple")
    )
    tokens = [p.data[0]["content"] for p in parts if p.event == "messages"]
    assert "".join(tokens) == "You said: hello. word0 word1 word2" and len(tokens) > 3
    meta = parts[1].data[1]
    assert meta["langgraph_node"] == "model" and meta["thread_id"] == thread["thread_id"]
    assert meta["langgraph_checkpoint_ns"].startswith("model:")
    parts = await _events(
        client.runs.stream(thread["thread_id"], "chat", input=HELLO, stream_mode="messages")
    )
    names = [p.event for p in parts]
    assert names[:2] == ["metadata", "messages/metadata"] and set(names[2:]) == {"messages/partial"}
    assert parts[-1].data[0]["content"] == "You said: hello. word0 word1 word2"
    assert parts[-1].data[0]["type"] == "ai"


async def test_debug_mode_orders_checkpoints_and_tasks(client: LangGraphClient) -> None:
    thread = await client.threads.create()
    parts = await _events(client.runs.stream(thread["thread_id"], "chat", input=HELLO, stream_mode="debug"))
    shape = [(p.data["type"], p.data["step"]) for p in parts[1:]]
    assert shape == [
        ("checkpoint", -1),
        ("checkpoint", 0),
        ("task", 1),
        ("task_result", 1),
        ("checkpoint", 1),
        ("task", 2),
        ("task_result", 2),
        ("checkpoint", 2),
    ]


async def test_subgraph_events_named_mode_and_namespace(client: LangGraphClient) -> None:
    thread = await client.threads.create()
    modes: Any = ["values", "updates"]
    parts = await _events(
        client.runs.stream(
            thread["thread_id"], "nested", input={"steps": []}, stream_mode=modes, stream_subgraphs=True
        )
    )
    nested = [p.event for p in parts if "|" in p.event]
    assert nested and all(e.split("|")[1].startswith("child:") for e in nested)
    flat = await _events(
        client.runs.stream(thread["thread_id"], "nested", input={"steps": []}, stream_mode=modes)
    )
    assert not [p for p in flat if "|" in p.event]


async def test_interrupt_then_resume_with_command(client: LangGraphClient) -> None:
    thread_id = (await client.threads.create())["thread_id"]
    ask: Any = {"messages": [{"role": "user", "content": "ship it"}]}
    parts = await _events(client.runs.stream(thread_id, "approve", input=ask))
    assert [p.event for p in parts] == ["metadata", "values", "values"]
    asked = parts[-1].data["__interrupt__"][0]
    assert asked["value"] == {"question": "Approve the plan?", "asked": "ship it"}
    thread = await client.threads.get(thread_id)
    assert (
        thread["status"] == "interrupted"
        and next(iter(thread["interrupts"].values()))[0]["id"] == asked["id"]
    )
    runs = await client.runs.list(thread_id)
    assert runs[0]["status"] == "success"
    parts = await _events(client.runs.stream(thread_id, "approve", command={"resume": "yes"}))
    assert parts[-1].data["approved"] == "yes"
    assert (await client.threads.get(thread_id))["status"] == "idle"
    updates = await _events(client.runs.stream(thread_id, "approve", input=ask, stream_mode="updates"))
    assert [p.event for p in updates] == ["metadata", "updates"] and "__interrupt__" in updates[1].data


async def test_join_after_a_dropped_connection_loses_and_repeats_nothing(client: LangGraphClient) -> None:
    thread_id = (await client.threads.create())["thread_id"]
    modes: Any = ["custom", "values"]
    ticks: Any = {"log": ["go"], "ticks": 8, "pace": 0.1}
    first: list[Any] = []
    stream = client.runs.stream(
        thread_id, "slow", input=ticks, stream_mode=modes, stream_resumable=True, on_disconnect="continue"
    )
    async for part in stream:
        first.append(part)
        if part.event == "custom" and part.data["tick"] == 2:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    run_id = first[0].data["run_id"]
    rest = await _events(client.runs.join_stream(thread_id, run_id, last_event_id=first[-1].id))
    seen = [p.data["tick"] for p in first + rest if p.event == "custom"]
    assert seen == list(range(8))
    ids = [p.id for p in first + rest]
    assert len(ids) == len(set(ids))
    again = await _events(client.runs.join_stream(thread_id, run_id, last_event_id="-1"))
    assert [p.id for p in again] == ids
    assert (await client.runs.get(thread_id, run_id))["status"] == "success"


async def test_cancel_wait_join(client: LangGraphClient) -> None:
    thread_id = (await client.threads.create())["thread_id"]
    run = await client.runs.create(thread_id, "slow", input={"ticks": 200, "pace": 0.05})
    await _until_running(client, thread_id, run["run_id"])
    await client.runs.cancel(thread_id, run["run_id"], wait=True)
    assert (await client.runs.get(thread_id, run["run_id"]))["status"] == "interrupted"
    assert await _status(client.runs.cancel(thread_id, run["run_id"])) == 404
    values = await client.runs.wait(thread_id, "chat", input=HELLO)
    assert values["messages"][-1]["content"].startswith("You said: hello.")  # type: ignore[index]
    stateless = await client.runs.wait(None, "chat", input=HELLO)
    assert stateless["turns"] == 1  # type: ignore[index]
    made = await client.runs.create(thread_id, "chat", input=HELLO)
    joined = await client.runs.join(thread_id, made["run_id"])
    assert joined["turns"] >= 2  # type: ignore[index]
    assert (await client.runs.get(thread_id, made["run_id"]))["status"] == "success"


@pytest.mark.parametrize("strategy", ["reject", "enqueue", "interrupt", "rollback"])
async def test_multitask_strategies(client: LangGraphClient, strategy: Any) -> None:
    thread_id = (await client.threads.create())["thread_id"]
    first = await client.runs.create(thread_id, "slow", input={"log": ["first"], "ticks": 40, "pace": 0.05})
    await _until_running(client, thread_id, first["run_id"])
    second_input: Any = {"log": ["second"], "ticks": 1, "pace": 0}
    if strategy == "reject":
        second = client.runs.create(thread_id, "slow", input=second_input, multitask_strategy=strategy)
        assert await _status(second) == 409
        await client.runs.join(thread_id, first["run_id"])
        assert (await client.threads.get_state(thread_id))["values"]["log"] == ["first", "ticked 40"]
        return
    second = await client.runs.create(thread_id, "slow", input=second_input, multitask_strategy=strategy)
    await client.runs.join(thread_id, second["run_id"])
    log = (await client.threads.get_state(thread_id))["values"]["log"]
    if strategy == "enqueue":
        assert log == ["first", "ticked 40", "second", "ticked 1"]
        assert (await client.runs.get(thread_id, first["run_id"]))["status"] == "success"
    elif strategy == "interrupt":
        assert log == ["first", "second", "ticked 1"]
        assert (await client.runs.get(thread_id, first["run_id"]))["status"] == "interrupted"
    else:
        assert log == ["second", "ticked 1"]


async def test_state_update_history_copy(client: LangGraphClient) -> None:
    thread_id = (await client.threads.create())["thread_id"]
    await client.runs.wait(thread_id, "chat", input=HELLO)
    state = await client.threads.get_state(thread_id)
    assert state["values"]["turns"] == 1 and state["next"] == []
    await client.threads.update_state(thread_id, {"turns": 10}, as_node="prepare")
    updated = await client.threads.get_state(thread_id)
    assert updated["values"]["turns"] == 10 and updated["next"] == ["model"]
    history = await client.threads.get_history(thread_id, limit=10)
    assert history[0]["checkpoint"]["checkpoint_id"] == updated["checkpoint"]["checkpoint_id"]
    assert len(history) == 5
    earlier = await client.threads.get_state(thread_id, checkpoint_id=state["checkpoint"]["checkpoint_id"])
    assert earlier["values"]["turns"] == 1
    copy = await client.threads.copy(thread_id)
    assert copy["thread_id"] != thread_id
    copied = await client.threads.get_state(copy["thread_id"])
    assert copied["values"] == updated["values"] and copied["next"] == ["model"]


async def test_thread_search_by_values_looks_past_the_first_page(client: LangGraphClient) -> None:
    """Values live in checkpoints: a search by them must read on until the page is full, not
    filter only the first page of threads."""
    mark = uuid.uuid4().hex[:8]
    who = {"user_id": f"search-{mark}"}
    needle: Any = await client.threads.create(metadata={"mark": mark})
    await client.runs.wait(needle["thread_id"], "remember", input={"note": f"needle-{mark}"}, context=who)
    for i in range(12):  # newer threads, which come first
        hay: Any = await client.threads.create(metadata={"mark": mark})
        await client.runs.wait(hay["thread_id"], "remember", input={"note": f"hay-{i}"}, context=who)
    found = await client.threads.search(metadata={"mark": mark}, values={"note": f"needle-{mark}"}, limit=2)
    assert [t["thread_id"] for t in found] == [needle["thread_id"]]
    assert await client.threads.search(metadata={"mark": mark}, values={"note": "nowhere"}, limit=2) == []
    second = await client.threads.search(metadata={"mark": mark}, values={"note": "hay-3"}, limit=1)
    assert len(second) == 1 and second[0]["values"]["note"] == "hay-3"
