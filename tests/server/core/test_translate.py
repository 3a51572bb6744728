"""StreamTranslator against real LangGraph streams (in-process graphs, InMemorySaver).

The graphs stream exactly as the executor streams them (same modes, subgraphs,
v2 parts), and every part goes through one translator per run, as in a run.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Iterator
from typing import Annotated, Any, TypedDict

import orjson
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Send, interrupt

from stepstream.server.core import events as ev
from stepstream.server.core.events import EventItem
from stepstream.server.core.executor import STREAM_MODES
from stepstream.server.core.translate import StreamTranslator

Graph = Any


class Log(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    n: int


def _append(name: str) -> Any:
    async def node(state: Log) -> dict[str, Any]:
        return {"log": [name]}

    return node


async def _ask(state: Log) -> dict[str, Any]:
    answer = interrupt("which one?")
    return {"log": [f"ask:{answer}"]}


def _compile(builder: StateGraph[Any]) -> Graph:
    return builder.compile(checkpointer=InMemorySaver())


def _config() -> RunnableConfig:
    return {"configurable": {"thread_id": str(uuid.uuid4())}}


async def _translate(
    graph: Graph, graph_input: Any, config: RunnableConfig, translator: StreamTranslator | None = None
) -> list[EventItem]:
    """All events of one run, streamed as the executor streams it."""
    translator = translator or StreamTranslator()
    out: list[EventItem] = []
    async for part in graph.astream(
        graph_input, config, stream_mode=STREAM_MODES, subgraphs=True, version="v2"
    ):
        out.extend(translator.feed(part))
    return out


STEP_KINDS = {ev.SUPERSTEP_STARTED, ev.SUPERSTEP_FINISHED, ev.TASK_STARTED, ev.TASK_FINISHED, ev.TASK_FAILED}


def _outline(events: list[EventItem], ns: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
    """Superstep and task events of one namespace, reduced to (kind, step, nodes or node)."""
    rows: list[tuple[Any, ...]] = []
    for kind, event_ns, data in events:
        if kind not in STEP_KINDS or event_ns != ns:
            continue
        if kind == ev.SUPERSTEP_STARTED:
            rows.append((kind, data["step"], sorted(t["node"] for t in data["tasks"])))
        elif kind == ev.SUPERSTEP_FINISHED:
            rows.append((kind, data["step"]))
        else:
            rows.append((kind, data["step"], data["task"]["node"]))
    return rows


def _of(events: list[EventItem], kind: str) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    return ((ns, data) for k, ns, data in events if k == kind)


def _task(events: list[EventItem], kind: str, node: str) -> dict[str, Any]:
    """The task reference of the first `kind` event of `node`."""
    return next(d["task"] for _, d in _of(events, kind) if d["task"]["node"] == node)


def _task_refs(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The task references an event carries (a superstep's list, or a task event's task)."""
    return list(data.get("tasks") or ()) + ([data["task"]] if "task" in data else [])


def _assert_supersteps_balanced(events: list[EventItem]) -> None:
    """Each superstep_finished closes a superstep this run opened, in its namespace, once."""
    open_steps: dict[tuple[str, ...], int] = {}
    for kind, ns, data in events:
        if kind == ev.SUPERSTEP_STARTED:
            assert ns not in open_steps, f"superstep {data['step']} in {ns} opened while another is open"
            open_steps[ns] = data["step"]
        elif kind == ev.SUPERSTEP_FINISHED:
            assert open_steps.pop(ns, None) == data["step"], (
                f"superstep_finished for step {data['step']} in {ns} that this run did not open: {events}"
            )
        elif kind in (ev.TASK_STARTED, ev.TASK_FINISHED, ev.TASK_FAILED):
            assert open_steps.get(ns) == data["step"], f"{kind} outside its superstep: {data}"


# -- a linear graph ---------------------------------------------------------------------------------


def _linear() -> Graph:
    builder = StateGraph(Log)
    for name in ("a", "b", "c"):
        builder.add_node(name, _append(name))
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", "c")
    builder.add_edge("c", END)
    return _compile(builder)


async def test_linear_graph_reports_superstep_pairs_in_order() -> None:
    graph, config = _linear(), _config()
    translator = StreamTranslator()
    events = await _translate(graph, {"log": []}, config, translator)

    assert _outline(events) == [
        (ev.SUPERSTEP_STARTED, 1, ["a"]),
        (ev.TASK_STARTED, 1, "a"),
        (ev.TASK_FINISHED, 1, "a"),
        (ev.SUPERSTEP_FINISHED, 1),
        (ev.SUPERSTEP_STARTED, 2, ["b"]),
        (ev.TASK_STARTED, 2, "b"),
        (ev.TASK_FINISHED, 2, "b"),
        (ev.SUPERSTEP_FINISHED, 2),
        (ev.SUPERSTEP_STARTED, 3, ["c"]),
        (ev.TASK_STARTED, 3, "c"),
        (ev.TASK_FINISHED, 3, "c"),
        (ev.SUPERSTEP_FINISHED, 3),
    ]
    _assert_supersteps_balanced(events)

    # Listed tasks are the tasks that then start, by id; updates are the nodes' returns.
    for (_, started), (_, task) in zip(
        _of(events, ev.SUPERSTEP_STARTED), _of(events, ev.TASK_STARTED), strict=True
    ):
        assert started["tasks"] == [task["task"]]
        assert task["task"]["namespace"] == []
    updates = [orjson.loads(d["update_json"]) for _, d in _of(events, ev.TASK_FINISHED)]
    assert updates == [{"log": ["a"]}, {"log": ["b"]}, {"log": ["c"]}]

    # Each superstep ends with the checkpoint LangGraph stored for that step.
    history = [s async for s in graph.aget_state_history(config)]
    stored = {s.metadata["step"]: s.config["configurable"]["checkpoint_id"] for s in history}
    finished = [(d["step"], d["checkpoint_id"]) for _, d in _of(events, ev.SUPERSTEP_FINISHED)]
    assert finished == [(step, stored[step]) for step in (1, 2, 3)]
    assert translator.last_checkpoint_id == stored[3]
    assert translator.last_values == {"log": ["a", "b", "c"]}
    assert not translator.interrupted


# -- a parallel superstep with an interrupt, then resumed ----------------------------------------------


def _parallel_with_interrupt() -> Graph:
    """a, then b and ask in one superstep (ask interrupts), then c."""
    builder = StateGraph(Log)
    builder.add_node("a", _append("a"))
    builder.add_node("b", _append("b"))
    builder.add_node("ask", _ask)
    builder.add_node("c", _append("c"))
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("a", "ask")
    builder.add_edge(["b", "ask"], "c")
    builder.add_edge("c", END)
    return _compile(builder)


async def test_interrupted_parallel_superstep_stays_open() -> None:
    graph, config = _parallel_with_interrupt(), _config()
    translator = StreamTranslator()
    events = await _translate(graph, {"log": []}, config, translator)

    outline = _outline(events)
    assert outline[:4] == [
        (ev.SUPERSTEP_STARTED, 1, ["a"]),
        (ev.TASK_STARTED, 1, "a"),
        (ev.TASK_FINISHED, 1, "a"),
        (ev.SUPERSTEP_FINISHED, 1),
    ]
    assert outline[4] == (ev.SUPERSTEP_STARTED, 2, ["ask", "b"])
    assert sorted(outline[5:]) == sorted(
        [(ev.TASK_STARTED, 2, "ask"), (ev.TASK_STARTED, 2, "b"), (ev.TASK_FINISHED, 2, "b")]
    ), "ask interrupts: it neither finishes nor fails, and step 2 does not finish"
    _assert_supersteps_balanced(events)

    [(ns, raised)] = list(_of(events, ev.INTERRUPT_RAISED))
    assert ns == () and raised["step"] == 2
    [pending] = (await graph.aget_state(config)).interrupts
    assert raised["interrupts"] == [
        {"interrupt_id": pending.id, "value_json": '"which one?"', "namespace": []}
    ]
    assert translator.interrupted


async def test_resumed_run_reports_only_new_work() -> None:
    graph, config = _parallel_with_interrupt(), _config()
    first = await _translate(graph, {"log": []}, config)
    b_task_id = _task(first, ev.TASK_FINISHED, "b")["task_id"]
    ask_task_id = _task(first, ev.TASK_STARTED, "ask")["task_id"]

    translator = StreamTranslator()
    resumed = await _translate(graph, Command(resume="yes"), config, translator)

    # The replayed checkpoint (end of step 1) closes no superstep: step 1 was not opened here.
    assert _outline(resumed) == [
        (ev.SUPERSTEP_STARTED, 2, ["ask"]),
        (ev.TASK_STARTED, 2, "ask"),
        (ev.TASK_FINISHED, 2, "ask"),
        (ev.SUPERSTEP_FINISHED, 2),
        (ev.SUPERSTEP_STARTED, 3, ["c"]),
        (ev.TASK_STARTED, 3, "c"),
        (ev.TASK_FINISHED, 3, "c"),
        (ev.SUPERSTEP_FINISHED, 3),
    ]
    _assert_supersteps_balanced(resumed)

    # The sibling that finished before the pause is not new work; the resumed task is the same task.
    mentioned = {ref["task_id"] for _, _, data in resumed for ref in _task_refs(data)}
    assert b_task_id not in mentioned
    [(_, started)] = [(ns, d) for ns, d in _of(resumed, ev.SUPERSTEP_STARTED) if d["step"] == 2]
    assert [t["task_id"] for t in started["tasks"]] == [ask_task_id]
    [ask_finished] = [d for _, d in _of(resumed, ev.TASK_FINISHED) if d["task"]["node"] == "ask"]
    assert ask_finished["task"]["task_id"] == ask_task_id
    assert orjson.loads(ask_finished["update_json"]) == {"log": ["ask:yes"]}

    assert not list(_of(resumed, ev.INTERRUPT_RAISED))
    assert not translator.interrupted
    # LangGraph applies one superstep's writes in task order, not in finishing order.
    assert sorted(translator.last_values["log"][1:3]) == ["ask:yes", "b"]
    assert translator.last_values["log"][::3] == ["a", "c"]
    final = await graph.aget_state(config)
    assert translator.last_checkpoint_id == final.config["configurable"]["checkpoint_id"]


# -- Send fan-out -------------------------------------------------------------------------------------


async def _work(arg: dict[str, Any]) -> dict[str, Any]:
    get_stream_writer()({"working_on": arg["i"]})
    return {"log": [f"work{arg['i']}"]}


def _fanout() -> Graph:
    builder = StateGraph(Log)
    builder.add_node("work", _work)
    builder.add_node("gather", _append("gather"))
    builder.add_conditional_edges(
        START, lambda state: [Send("work", {"i": i}) for i in range(state["n"])], ["work"]
    )
    builder.add_edge("work", "gather")
    builder.add_edge("gather", END)
    return _compile(builder)


async def test_send_fanout_is_one_superstep_listing_every_send() -> None:
    events = await _translate(_fanout(), {"n": 5}, _config())

    steps = [(d["step"], d["tasks"]) for _, d in _of(events, ev.SUPERSTEP_STARTED)]
    assert [step for step, _ in steps] == [1, 2]
    listed = steps[0][1]
    assert [t["node"] for t in listed] == ["work"] * 5
    assert len({t["task_id"] for t in listed}) == 5

    started = [d for _, d in _of(events, ev.TASK_STARTED) if d["step"] == 1]
    assert sorted(t["task"]["task_id"] for t in started) == sorted(t["task_id"] for t in listed)
    # A Send task's input is its Send argument.
    assert sorted(orjson.loads(t["input_json"])["i"] for t in started) == [0, 1, 2, 3, 4]
    finished = [d for _, d in _of(events, ev.TASK_FINISHED) if d["step"] == 1]
    assert sorted(t["task"]["task_id"] for t in finished) == sorted(t["task_id"] for t in listed)
    assert [d["task"]["node"] for _, d in _of(events, ev.TASK_STARTED) if d["step"] == 2] == ["gather"]
    _assert_supersteps_balanced(events)

    customs = sorted(orjson.loads(d["value_json"])["working_on"] for _, d in _of(events, ev.CUSTOM))
    assert customs == [0, 1, 2, 3, 4]


# -- a failing node -----------------------------------------------------------------------------------


async def _explode(state: Log) -> dict[str, Any]:
    raise ValueError("the node broke")


async def test_failing_node_reports_task_failed() -> None:
    builder = StateGraph(Log)
    builder.add_node("a", _append("a"))
    builder.add_node("explode", _explode)
    builder.add_edge(START, "a")
    builder.add_edge("a", "explode")
    builder.add_edge("explode", END)
    graph = _compile(builder)

    translator = StreamTranslator()
    events: list[EventItem] = []
    with pytest.raises(ValueError, match="the node broke"):
        async for part in graph.astream(
            {"log": []}, _config(), stream_mode=STREAM_MODES, subgraphs=True, version="v2"
        ):
            events.extend(translator.feed(part))

    assert _outline(events) == [
        (ev.SUPERSTEP_STARTED, 1, ["a"]),
        (ev.TASK_STARTED, 1, "a"),
        (ev.TASK_FINISHED, 1, "a"),
        (ev.SUPERSTEP_FINISHED, 1),
        (ev.SUPERSTEP_STARTED, 2, ["explode"]),
        (ev.TASK_STARTED, 2, "explode"),
        (ev.TASK_FAILED, 2, "explode"),
    ]
    [(ns, failed)] = list(_of(events, ev.TASK_FAILED))
    assert ns == ()
    assert failed["error_type"] == "ValueError"
    assert failed["error_message"] == "the node broke"
    assert failed["duration_seconds"] >= 0.0
    assert failed["task"] == _task(events, ev.TASK_STARTED, "explode")
    assert translator.seen and not translator.interrupted


async def test_run_continued_after_failure_does_not_repeat_the_finished_sibling() -> None:
    attempts: list[int] = []

    async def flaky(state: Log) -> dict[str, Any]:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")
        return {"log": ["flaky"]}

    builder = StateGraph(Log)
    builder.add_node("a", _append("a"))
    builder.add_node("b", _append("b"))
    builder.add_node("flaky", flaky)
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("a", "flaky")
    builder.add_edge(["b", "flaky"], END)
    graph, config = _compile(builder), _config()

    first: list[EventItem] = []
    translator = StreamTranslator()
    with pytest.raises(RuntimeError):
        async for part in graph.astream(
            {"log": []}, config, stream_mode=STREAM_MODES, subgraphs=True, version="v2"
        ):
            first.extend(translator.feed(part))
    [(_, failed)] = list(_of(first, ev.TASK_FAILED))
    assert (failed["task"]["node"], failed["error_type"]) == ("flaky", "RuntimeError")

    again = await _translate(graph, None, config)
    assert _outline(again) == [
        (ev.SUPERSTEP_STARTED, 2, ["flaky"]),
        (ev.TASK_STARTED, 2, "flaky"),
        (ev.TASK_FINISHED, 2, "flaky"),
        (ev.SUPERSTEP_FINISHED, 2),
    ]
    assert (await graph.aget_state(config)).values == {"log": ["a", "b", "flaky"]}


# -- subgraphs ----------------------------------------------------------------------------------------


def _nested() -> Graph:
    """outer, then sub (a subgraph: i1, then i2 and iask in parallel) beside side, then last."""
    inner = StateGraph(Log)
    inner.add_node("i1", _append("i1"))
    inner.add_node("i2", _append("i2"))
    inner.add_node("iask", _ask)
    inner.add_edge(START, "i1")
    inner.add_edge("i1", "i2")
    inner.add_edge("i1", "iask")
    inner.add_edge(["i2", "iask"], END)
    outer = StateGraph(Log)
    outer.add_node("outer", _append("outer"))
    outer.add_node("side", _append("side"))
    outer.add_node("sub", inner.compile())
    outer.add_node("last", _append("last"))
    outer.add_edge(START, "outer")
    outer.add_edge("outer", "sub")
    outer.add_edge("outer", "side")
    outer.add_edge(["sub", "side"], "last")
    outer.add_edge("last", END)
    return _compile(outer)


async def test_subgraph_events_carry_their_namespace() -> None:
    graph, config = _nested(), _config()
    events = await _translate(graph, {"log": []}, config)

    sub_task = _task(events, ev.TASK_STARTED, "sub")
    assert sub_task["namespace"] == []
    sub_ns = (f"sub:{sub_task['task_id']}",)
    assert {ns for _, ns, _ in events} == {(), sub_ns}

    sub_outline = _outline(events, sub_ns)
    assert sub_outline[:5] == [
        (ev.SUPERSTEP_STARTED, 1, ["i1"]),
        (ev.TASK_STARTED, 1, "i1"),
        (ev.TASK_FINISHED, 1, "i1"),
        (ev.SUPERSTEP_FINISHED, 1),
        (ev.SUPERSTEP_STARTED, 2, ["i2", "iask"]),
    ]
    assert sorted(sub_outline[5:]) == sorted(
        [(ev.TASK_STARTED, 2, "i2"), (ev.TASK_STARTED, 2, "iask"), (ev.TASK_FINISHED, 2, "i2")]
    )
    # Task references inside the subgraph name the subgraph's namespace too.
    for kind, ns, data in events:
        for ref in _task_refs(data):
            assert ref["namespace"] == list(ns), (kind, ns, ref)
    raised = {ns: d for ns, d in _of(events, ev.INTERRUPT_RAISED)}
    assert raised[sub_ns]["interrupts"][0]["namespace"] == list(sub_ns)
    assert raised[sub_ns]["step"] == 2
    assert ev.STATE_VALUES in {kind for kind, ns, _ in events if ns == sub_ns}
    _assert_supersteps_balanced(events)


async def test_resumed_subgraph_reports_only_new_work_in_its_namespace() -> None:
    graph, config = _nested(), _config()
    first = await _translate(graph, {"log": []}, config)
    sub_task = _task(first, ev.TASK_STARTED, "sub")
    sub_ns = (f"sub:{sub_task['task_id']}",)

    resumed = await _translate(graph, Command(resume="yes"), config)

    assert _outline(resumed) == [
        (ev.SUPERSTEP_STARTED, 2, ["sub"]),
        (ev.TASK_STARTED, 2, "sub"),
        (ev.TASK_FINISHED, 2, "sub"),
        (ev.SUPERSTEP_FINISHED, 2),
        (ev.SUPERSTEP_STARTED, 3, ["last"]),
        (ev.TASK_STARTED, 3, "last"),
        (ev.TASK_FINISHED, 3, "last"),
        (ev.SUPERSTEP_FINISHED, 3),
    ]
    assert _outline(resumed, sub_ns) == [
        (ev.SUPERSTEP_STARTED, 2, ["iask"]),
        (ev.TASK_STARTED, 2, "iask"),
        (ev.TASK_FINISHED, 2, "iask"),
        (ev.SUPERSTEP_FINISHED, 2),
    ]
    _assert_supersteps_balanced(resumed)
    assert (await graph.aget_state(config)).values["log"][-2:] == ["ask:yes", "last"]


# -- message chunks -----------------------------------------------------------------------------------


async def test_chat_model_tokens_become_message_chunks() -> None:
    class Chat(TypedDict, total=False):
        reply: str

    async def reply(state: Chat) -> dict[str, Any]:
        model = GenericFakeChatModel(messages=iter([AIMessage("hello there friend")]))
        message = await model.ainvoke("hi")
        return {"reply": message.content}

    builder = StateGraph(Chat)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    events = await _translate(_compile(builder), {}, _config())

    chunks = [d for _, d in _of(events, ev.MESSAGE_CHUNK)]
    assert len(chunks) > 1
    assert {(c["node"], c["step"]) for c in chunks} == {("reply", 1)}
    assert len({c["message_id"] for c in chunks}) == 1 and chunks[0]["message_id"]
    text = "".join(orjson.loads(c["chunk_json"])["content"] for c in chunks)
    assert text == "hello there friend"
