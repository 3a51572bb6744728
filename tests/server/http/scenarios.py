"""The scenarios of the differential recorder: the same langgraph_sdk calls against any server.

Each scenario works on threads of its own (scenarios run side by side) and records only what
does not depend on timing: a stream dropped mid-way is dropped after a given event, a run is
cancelled once `runs.get` says it is running, and a thread search filters on metadata unique
to the scenario. Graphs: tests/graphs/http_graphs.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from langgraph_sdk.client import LangGraphClient

from tests.server.http.transcript import Recorder, event_id_shape

Scenario = Callable[[LangGraphClient, Recorder], Awaitable[None]]
MODES = ("values", "updates", "messages-tuple", "messages", "custom", "tasks", "checkpoints", "debug")
HELLO: Any = {"messages": [{"role": "user", "content": "hello"}]}
SCENARIOS: dict[str, Scenario] = {}
# LangGraph's server derives each graph's default assistant id from the graph id with this namespace.
ASSISTANT_NAMESPACE = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")


def scenario(name: str) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        SCENARIOS[name] = fn
        return fn

    return register


async def _thread(client: LangGraphClient, r: Recorder, **kwargs: Any) -> str:
    thread = await r.call("threads.create", lambda: client.threads.create(**kwargs))
    return str(thread["thread_id"])


async def _until_running(client: LangGraphClient, thread_id: str, run_id: str) -> None:
    """Poll until the run runs and its input is checkpointed (how many polls it takes is timing,
    not recorded): from then on, cancelling or interrupting it leaves the same state every time."""
    for _ in range(600):
        run = await client.runs.get(thread_id, run_id)
        if run["status"] == "running":
            state = await client.threads.get_state(thread_id)
            if isinstance(state["values"], dict) and "ticks" in state["values"]:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} never started")


def _stream_mode_scenario(mode: str) -> Scenario:
    async def run(client: LangGraphClient, r: Recorder) -> None:
        thread_id = await _thread(client, r)
        parts = client.runs.stream(thread_id, "chat", input=HELLO, stream_mode=mode)  # type: ignore[arg-type]
        await r.stream(f"runs.stream chat {mode}", parts)

    return run


for _mode in MODES:
    scenario(f"stream_{_mode}")(_stream_mode_scenario(_mode))


@scenario("stream_several_modes_resumable")
async def several_modes(client: LangGraphClient, r: Recorder) -> None:
    """Several modes on one stream, resumable (events carry ids), then the whole stream again."""
    thread_id = await _thread(client, r)
    modes: Any = ["values", "updates", "messages-tuple", "custom"]
    parts = await r.stream(
        "runs.stream chat values+updates+messages-tuple+custom resumable",
        client.runs.stream(thread_id, "chat", input=HELLO, stream_mode=modes, stream_resumable=True),
    )
    run_id = parts[0].data["run_id"]
    again = await r.stream(
        "runs.join_stream Last-Event-ID -1 after the end",
        client.runs.join_stream(thread_id, run_id, last_event_id="-1"),
    )
    r.note("replay -1 repeats the stream's events", [p.event for p in again] == [p.event for p in parts])


@scenario("stream_subgraphs")
async def subgraphs(client: LangGraphClient, r: Recorder) -> None:
    thread_id = await _thread(client, r)
    modes: Any = ["values", "updates", "custom"]
    await r.stream(
        "runs.stream nested subgraphs",
        client.runs.stream(
            thread_id, "nested", input={"steps": []}, stream_mode=modes, stream_subgraphs=True
        ),
    )
    await r.stream(
        "runs.stream nested without subgraphs",
        client.runs.stream(thread_id, "nested", input={"steps": []}, stream_mode=modes),
    )


@scenario("interrupt_resume")
async def interrupt_resume(client: LangGraphClient, r: Recorder) -> None:
    """interrupt() reported in `values` (useStream's place) and in `updates`; Command(resume=...)."""
    ask: Any = {"messages": [{"role": "user", "content": "ship it"}]}
    thread_id = await _thread(client, r)
    await r.stream("runs.stream approve values", client.runs.stream(thread_id, "approve", input=ask))
    await r.call("threads.get interrupted", lambda: client.threads.get(thread_id))
    await r.call("threads.get_state interrupted", lambda: client.threads.get_state(thread_id))
    modes: Any = ["values", "messages-tuple"]
    await r.stream(
        "runs.stream approve resume",
        client.runs.stream(thread_id, "approve", command={"resume": "yes"}, stream_mode=modes),
    )
    await r.call("threads.get after resume", lambda: client.threads.get(thread_id))
    await r.call("runs.list", lambda: client.runs.list(thread_id))

    other = await _thread(client, r)
    parts = client.runs.stream(other, "approve", input=ask, stream_mode="updates")
    await r.stream("runs.stream approve updates", parts)


@scenario("join_after_drop")
async def join_after_drop(client: LangGraphClient, r: Recorder) -> None:
    """A resumable stream dropped after its third tick, rejoined with the last id it saw."""
    thread_id = await _thread(client, r)
    modes: Any = ["custom", "values"]
    ticks: Any = {"log": ["go"], "ticks": 8, "pace": 0.15}
    first = await r.stream(
        "runs.stream slow dropped after tick 2",
        client.runs.stream(
            thread_id, "slow", input=ticks, stream_mode=modes, stream_resumable=True, on_disconnect="continue"
        ),
        stop_after=lambda p: p.event == "custom" and p.data.get("tick") == 2,
    )
    run_id, last_id = first[0].data["run_id"], first[-1].id
    rest = await r.stream(
        "runs.join_stream Last-Event-ID",
        client.runs.join_stream(thread_id, run_id, last_event_id=last_id),
    )
    seen = [p.data["tick"] for p in first + rest if p.event == "custom"]
    r.note("ticks across the drop", seen)
    await r.call("runs.get after join", lambda: client.runs.get(thread_id, run_id))


@scenario("cancel")
async def cancel(client: LangGraphClient, r: Recorder) -> None:
    thread_id = await _thread(client, r)
    run = await r.call(
        "runs.create slow", lambda: client.runs.create(thread_id, "slow", input={"ticks": 100, "pace": 0.05})
    )
    await _until_running(client, thread_id, run["run_id"])
    await r.call("runs.cancel wait", lambda: client.runs.cancel(thread_id, run["run_id"], wait=True))
    await r.call("runs.get cancelled", lambda: client.runs.get(thread_id, run["run_id"]))
    await r.call("threads.get after cancel", lambda: client.threads.get(thread_id))
    await r.call("runs.cancel again", lambda: client.runs.cancel(thread_id, run["run_id"]))


@scenario("wait")
async def wait(client: LangGraphClient, r: Recorder) -> None:
    thread_id = await _thread(client, r)
    await r.call("runs.wait chat", lambda: client.runs.wait(thread_id, "chat", input=HELLO))
    await r.call("runs.wait stateless", lambda: client.runs.wait(None, "chat", input=HELLO))
    run = await r.call("runs.create chat", lambda: client.runs.create(thread_id, "chat", input=HELLO))
    await r.call("runs.join", lambda: client.runs.join(thread_id, run["run_id"]))
    await r.call("runs.get joined", lambda: client.runs.get(thread_id, run["run_id"]))


def _multitask_scenario(strategy: str) -> Scenario:
    async def run(client: LangGraphClient, r: Recorder) -> None:
        thread_id = await _thread(client, r)
        first_input: Any = {"log": ["first"], "ticks": 20, "pace": 0.05}
        second_input: Any = {"log": ["second"], "ticks": 1, "pace": 0}
        how: Any = strategy
        first = await r.call(
            "runs.create slow (first)", lambda: client.runs.create(thread_id, "slow", input=first_input)
        )
        await _until_running(client, thread_id, first["run_id"])
        second = await r.call(
            f"runs.create slow (second, {strategy})",
            lambda: client.runs.create(thread_id, "slow", input=second_input, multitask_strategy=how),
        )
        if second is not None:
            await r.call("runs.join second", lambda: client.runs.join(thread_id, second["run_id"]))
        else:
            await r.call("runs.join first", lambda: client.runs.join(thread_id, first["run_id"]))
        await r.call("runs.get first", lambda: client.runs.get(thread_id, first["run_id"]))
        await r.call("threads.get_state", lambda: client.threads.get_state(thread_id))
        await r.call("runs.list", lambda: client.runs.list(thread_id))

    return run


for _strategy in ("reject", "enqueue", "interrupt", "rollback"):
    scenario(f"multitask_{_strategy}")(_multitask_scenario(_strategy))


@scenario("state_history_copy")
async def state_history_copy(client: LangGraphClient, r: Recorder) -> None:
    thread_id = await _thread(client, r, metadata={"scenario": "state_history_copy"})
    await r.call("runs.wait chat", lambda: client.runs.wait(thread_id, "chat", input=HELLO))
    await r.call("threads.get_state", lambda: client.threads.get_state(thread_id))
    await r.call(
        "threads.update_state as prepare",
        lambda: client.threads.update_state(thread_id, {"turns": 10}, as_node="prepare"),
    )
    state = await r.call("threads.get_state after update", lambda: client.threads.get_state(thread_id))
    await r.call("threads.get_history", lambda: client.threads.get_history(thread_id, limit=10))
    checkpoint_id = state["checkpoint"]["checkpoint_id"]
    await r.call(
        "threads.get_state at checkpoint",
        lambda: client.threads.get_state(thread_id, checkpoint_id=checkpoint_id),
    )
    copy = await r.call("threads.copy", lambda: client.threads.copy(thread_id))
    await r.call("threads.get copy", lambda: client.threads.get(copy["thread_id"]))
    await r.call("threads.get_state copy", lambda: client.threads.get_state(copy["thread_id"]))
    await r.call(
        "threads.update metadata",
        lambda: client.threads.update(thread_id, metadata={"reviewed": True}),
    )


@scenario("search_threads")
async def search_threads(client: LangGraphClient, r: Recorder) -> None:
    for n in range(3):
        await _thread(client, r, metadata={"suite": "search", "n": n})
    await _thread(client, r, metadata={"suite": "elsewhere"})
    ran = await _thread(client, r, metadata={"suite": "search", "n": 9})
    await r.call("runs.wait chat", lambda: client.runs.wait(ran, "chat", input=HELLO))
    found = {"metadata": {"suite": "search"}}
    await r.call("threads.search metadata", lambda: client.threads.search(**found))  # type: ignore[arg-type]
    await r.call(
        "threads.search metadata idle, limit 2",
        lambda: client.threads.search(metadata={"suite": "search"}, status="idle", limit=2),
    )
    await r.call(
        "threads.search metadata n=1",
        lambda: client.threads.search(metadata={"suite": "search", "n": 1}),
    )
    await r.call("threads.count metadata", lambda: client.threads.count(metadata={"suite": "search"}))


@scenario("assistants")
async def assistants(client: LangGraphClient, r: Recorder) -> None:
    found = await r.call("assistants.search", lambda: client.assistants.search(limit=50))
    ids = {a["graph_id"]: a["assistant_id"] for a in found}
    r.note(
        "default assistant id is uuid5(6ba7b821-..., graph_id)",
        {graph: str(uuid.uuid5(ASSISTANT_NAMESPACE, graph)) == aid for graph, aid in sorted(ids.items())},
    )
    await r.call("assistants.search graph_id chat", lambda: client.assistants.search(graph_id="chat"))
    await r.call("assistants.get by graph name", lambda: client.assistants.get("chat"))
    await r.call("assistants.get by id", lambda: client.assistants.get(ids["chat"]))
    await r.call("assistants.get_schemas remember", lambda: client.assistants.get_schemas(ids["remember"]))
    await r.call("assistants.get_graph chat", lambda: client.assistants.get_graph(ids["chat"]))
    await r.call(
        "assistants.get_graph nested xray", lambda: client.assistants.get_graph(ids["nested"], xray=True)
    )
    await r.call("assistants.get_subgraphs nested", lambda: client.assistants.get_subgraphs(ids["nested"]))
    await r.call("assistants.count", lambda: client.assistants.count())


@scenario("store")
async def store(client: LangGraphClient, r: Recorder) -> None:
    for key, text in (("a", "alpha"), ("b", "beta")):
        await r.call(
            f"store.put_item {key}",
            lambda key=key, text=text: client.store.put_item(["docs", "u1"], key, {"text": text}),  # type: ignore[misc]
        )
    await r.call(
        "store.put_item other", lambda: client.store.put_item(["docs", "u2"], "c", {"text": "gamma"})
    )
    await r.call("store.get_item", lambda: client.store.get_item(["docs", "u1"], "a"))
    await r.call("store.search_items", lambda: client.store.search_items(["docs"]))
    await r.call(
        "store.search_items filter",
        lambda: client.store.search_items(["docs"], filter={"text": "beta"}),
    )
    await r.call("store.list_namespaces", lambda: client.store.list_namespaces(prefix=["docs"]))
    await r.call("store.delete_item", lambda: client.store.delete_item(["docs", "u1"], "a"))
    await r.call("store.get_item deleted", lambda: client.store.get_item(["docs", "u1"], "a"))


@scenario("context_and_store")
async def context_and_store(client: LangGraphClient, r: Recorder) -> None:
    """A node reading context (Runtime) and writing runtime.store; the store API sees the items."""
    thread_id = await _thread(client, r)
    for note in ("buy milk", "call home"):
        await r.call(
            f"runs.wait remember {note!r}",
            lambda note=note: client.runs.wait(  # type: ignore[misc]
                thread_id, "remember", input={"note": note}, context={"user_id": "u7"}
            ),
        )
    await r.call("store.search_items memories u7", lambda: client.store.search_items(["memories", "u7"]))


MISSING = "00000000-0000-4000-8000-000000000000"


@scenario("bad_input")
async def bad_input(client: LangGraphClient, r: Recorder) -> None:
    """The status codes and bodies of bad calls: unknown ids (404), conflicts (409), invalid bodies (422)."""
    thread_id = await _thread(client, r)
    run = await r.call("runs.create chat", lambda: client.runs.create(thread_id, "chat", input=HELLO))
    await client.runs.join(thread_id, run["run_id"])
    t, run_path = f"/threads/{thread_id}", f"/threads/{thread_id}/runs/{run['run_id']}"
    for method, path in (
        ("GET", f"/threads/{MISSING}"),
        ("GET", "/threads/not-a-uuid"),
        ("DELETE", f"/threads/{MISSING}"),
        ("GET", f"/threads/{MISSING}/state"),
        ("GET", f"{t}/runs/{MISSING}"),
        ("GET", f"{t}/runs/{MISSING}/stream"),
        ("GET", f"/threads/{MISSING}/runs/{run['run_id']}"),
        ("GET", f"/assistants/{MISSING}"),
        ("GET", "/assistants/no_such_graph"),
        ("GET", "/store/items?namespace=docs&key=missing"),
    ):
        await r.raw(method, path)
    await r.raw("POST", f"{run_path}/cancel", label="POST cancel a finished run")
    await r.raw("POST", f"/threads/{MISSING}/runs", json_body={"assistant_id": "chat"})
    await r.raw("POST", f"{t}/runs", json_body={"assistant_id": "no_such_graph"})
    await r.raw("POST", f"{t}/runs", json_body={"assistant_id": MISSING})
    await r.raw("POST", f"/threads/{MISSING}/state", json_body={"values": {"turns": 1}})
    await r.raw("POST", "/threads", json_body={"thread_id": thread_id, "if_exists": "raise"})
    await r.raw("POST", "/threads", json_body={"thread_id": thread_id, "if_exists": "do_nothing"})
    await r.raw("POST", f"{t}/runs", json_body={"input": {}}, label="POST runs without assistant_id")
    bad_mode = {"assistant_id": "chat", "stream_mode": "bogus"}
    await r.raw("POST", f"{t}/runs", json_body=bad_mode, label="POST runs stream_mode bogus")
    await r.raw("POST", f"{t}/runs", json_body={"assistant_id": "chat", "multitask_strategy": "later"})
    await r.raw("POST", f"{t}/runs", json_body={"assistant_id": "chat", "config": "not an object"})
    await r.raw("POST", f"{t}/runs", content=b'{"assistant_id": "chat",', label="POST runs malformed JSON")
    await r.raw("POST", "/threads", content=b"[1, 2", label="POST threads malformed JSON")
    await r.raw("POST", "/threads/search", json_body={"limit": "many"})
    await r.raw("POST", "/assistants/search", json_body={"limit": -1})
    await r.raw("PUT", "/store/items", json_body={"namespace": "docs", "key": "a", "value": {}})
    await r.raw("PUT", "/store/items", json_body={"namespace": ["do.cs"], "key": "a", "value": {}})
    await r.raw("PUT", "/store/items", json_body={"namespace": ["docs"], "key": "a", "value": [1]})
    await r.raw("POST", "/store/items/search", json_body={"namespace_prefix": "docs"})
    busy = await client.runs.create(thread_id, "slow", input={"ticks": 40, "pace": 0.05})
    await _until_running(client, thread_id, busy["run_id"])
    reject = {"assistant_id": "chat", "multitask_strategy": "reject"}
    await r.raw("POST", f"{t}/runs", json_body=reject, label="POST runs reject while busy")
    await client.runs.cancel(thread_id, busy["run_id"], wait=True)
    await r.call("threads.get after the bad calls", lambda: client.threads.get(thread_id))
    await r.raw("DELETE", t, label="DELETE an idle thread")
    await r.raw("GET", t, label="GET a deleted thread")
    other = await _thread(client, r)
    busy = await client.runs.create(other, "slow", input={"ticks": 40, "pace": 0.05})
    await _until_running(client, other, busy["run_id"])
    await r.raw("DELETE", f"/threads/{other}", label="DELETE a busy thread")
    await r.raw("GET", f"/threads/{other}/runs/{busy['run_id']}", label="GET the run of a deleted thread")


@scenario("sse_wire")
async def sse_wire(client: LangGraphClient, r: Recorder) -> None:
    """The SSE response as bytes on the wire: status, headers the clients read, frame layout."""
    thread_id = await _thread(client, r)
    body = {
        "assistant_id": "chat",
        "input": HELLO,
        "stream_mode": ["values", "custom"],
        "stream_resumable": True,
    }
    async with r.http.stream("POST", f"/threads/{thread_id}/runs/stream", json=body) as response:
        lines = [line async for line in response.aiter_lines()]
    # Heartbeat comments come with time, not with events: left out of the record.
    frames = [_line_shape(line) for line in lines if not line.startswith(":")]
    headers = {k: response.headers.get(k) for k in ("content-type", "location", "content-location")}
    r.note("status and headers", {"status": response.status_code, **headers})
    r.note("frame lines", frames)


def _line_shape(line: str) -> str:
    """A frame line without its payload: `event: values`, `data: {...}`, `id: N-N`, or blank."""
    field, _, value = line.partition(":")
    if field == "data":
        return "data: <json>"
    if field == "id":
        return f"id: {event_id_shape(value.strip())}"
    return line
