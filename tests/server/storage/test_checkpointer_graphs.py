"""Real LangGraph graphs through the saver: interrupts, time travel, many concurrent runs."""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from stepstream.server.storage.checkpointer import SQLAlchemyCheckpointSaver
from stepstream.server.storage.db import create_engine

pytestmark = pytest.mark.process

SaverFactory = Callable[[], AbstractAsyncContextManager[SQLAlchemyCheckpointSaver]]


class State(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    answer: str


def linear() -> StateGraph[State]:
    graph = StateGraph(State)
    for name in ("a", "b", "c"):

        async def node(state: State, name: str = name) -> State:
            return {"log": [name]}

        graph.add_node(name, node)
    graph.add_edge(START, "a")
    graph.add_edge("a", "b")
    graph.add_edge("b", "c")
    graph.add_edge("c", END)
    return graph


def asking() -> StateGraph[State]:
    async def ask(state: State) -> State:
        answer = interrupt("proceed?")
        return {"answer": answer, "log": ["ask"]}

    async def finish(state: State) -> State:
        return {"log": [f"finish:{state['answer']}"]}

    graph = StateGraph(State)
    graph.add_node("ask", ask)
    graph.add_node("finish", finish)
    graph.add_edge(START, "ask")
    graph.add_edge("ask", "finish")
    graph.add_edge("finish", END)
    return graph


def config(thread_id: str) -> Any:
    return {"configurable": {"thread_id": thread_id}}


async def test_interrupt_then_resume_from_a_new_process_view(make_saver: SaverFactory) -> None:
    async with make_saver() as saver:
        cfg = config("s-interrupt")
        first = await asking().compile(checkpointer=saver).ainvoke({"log": ["start"]}, cfg)
        assert [i.value for i in first["__interrupt__"]] == ["proceed?"]

        # A second engine on the same file, as a restarted replica would have.
        engine = create_engine(saver.engine.url.render_as_string(hide_password=False))
        other = SQLAlchemyCheckpointSaver(engine)
        try:
            app = asking().compile(checkpointer=other)
            state = await app.aget_state(cfg)
            assert state.next == ("ask",)
            assert [i.value for i in state.tasks[0].interrupts] == ["proceed?"]
            out = await app.ainvoke(Command(resume="yes"), cfg)
        finally:
            await other.aclose()
            await engine.dispose()
        assert out == {"log": ["start", "ask", "finish:yes"], "answer": "yes"}


async def test_time_travel_forks_from_an_earlier_checkpoint(make_saver: SaverFactory) -> None:
    async with make_saver() as saver:
        app = linear().compile(checkpointer=saver)
        cfg = config("s-travel")
        assert (await app.ainvoke({"log": []}, cfg))["log"] == ["a", "b", "c"]

        history = [s async for s in app.aget_state_history(cfg)]
        assert [s.metadata["step"] for s in history] == [3, 2, 1, 0, -1]  # type: ignore[index]
        after_a = next(s for s in history if s.values.get("log") == ["a"])
        assert after_a.next == ("b",)

        forked = await app.aupdate_state(after_a.config, {"log": ["edited"]})
        out = await app.ainvoke(None, forked)
        assert out["log"] == ["a", "edited", "b", "c"]

        # The original branch is still there, and the fork's parent is the step we went back to.
        fork_state = await app.aget_state(forked)
        assert fork_state.parent_config is not None
        assert (
            fork_state.parent_config["configurable"]["checkpoint_id"]
            == after_a.config["configurable"]["checkpoint_id"]
        )
        original = await app.aget_state(history[0].config)
        assert original.values["log"] == ["a", "b", "c"]
        assert len([s async for s in app.aget_state_history(cfg)]) == len(history) + 3


async def test_concurrent_runs_share_group_commits(make_saver: SaverFactory) -> None:
    runs = 64
    async with make_saver() as saver:
        app = linear().compile(checkpointer=saver)
        outs = await asyncio.gather(*(app.ainvoke({"log": [str(i)]}, config(f"s-{i}")) for i in range(runs)))
        assert [o["log"] for o in outs] == [[str(i), "a", "b", "c"] for i in range(runs)]
        for i in (0, runs // 2, runs - 1):
            state = await app.aget_state(config(f"s-{i}"))
            assert state.values["log"] == [str(i), "a", "b", "c"] and state.next == ()
        # Alone, each run would need a commit per checkpoint and per task's writes (at least 7):
        # sharing transactions must at least halve that.
        assert saver.writer.commits < runs * 7 / 2


async def test_delete_for_runs_and_prune_keep_the_live_state(make_saver: SaverFactory) -> None:
    async with make_saver() as saver:
        app = linear().compile(checkpointer=saver)
        cfg = config("s-runs")
        first, second = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
        # LangGraph copies config["metadata"]["run_id"] into each checkpoint's metadata.
        await app.ainvoke({"log": ["1"]}, {**cfg, "metadata": {"run_id": first}})
        await app.ainvoke({"log": ["2"]}, {**cfg, "metadata": {"run_id": second}})
        before = [s async for s in app.aget_state_history(cfg)]
        await saver.adelete_for_runs([first])
        after = [s async for s in app.aget_state_history(cfg)]
        assert 0 < len(after) < len(before)
        assert {s.metadata.get("run_id") for s in after} == {second}
        assert (await app.aget_state(cfg)).values["log"] == ["1", "a", "b", "c", "2", "a", "b", "c"]

        await saver.aprune_history(keep=2)
        assert len([s async for s in app.aget_state_history(cfg)]) == 2
        await saver.aprune(["s-runs"])
        latest = [s async for s in app.aget_state_history(cfg)]
        assert len(latest) == 1 and latest[0].values["log"][-1] == "c"
        # The pruned thread goes on from where it was.
        out = await app.ainvoke({"log": ["3"]}, cfg)
        assert out["log"][-4:] == ["3", "a", "b", "c"]
