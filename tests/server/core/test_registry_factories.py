"""Graph factories, state schemas, langgraph.json dependencies and key names in config errors."""

from __future__ import annotations

import json
import pathlib
import re
import textwrap

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from stepstream.server.core.registry import ConfigError, GraphRegistry, GraphSpec, LoadedGraph, read_config

AGENT = """
    from typing_extensions import TypedDict
    from langchain_core.runnables import RunnableConfig
    from langgraph.graph import END, START, StateGraph

    class State(TypedDict, total=False):
        text: str

    async def shout(state: State) -> dict:
        return {"text": state.get("text", "").upper()}

    def _builder() -> StateGraph:
        b = StateGraph(State)
        b.add_node("shout", shout)
        b.add_edge(START, "shout")
        b.add_edge("shout", END)
        return b

    def broken_factory():
        raise RuntimeError("factory broke")

    def config_factory(config: RunnableConfig):
        return _builder().compile()
"""


def _project(tmp_path: pathlib.Path, graphs: dict[str, str]) -> pathlib.Path:
    (tmp_path / "agent.py").write_text(textwrap.dedent(AGENT))
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({"dependencies": ["."], "graphs": graphs}))
    return config


async def _load(config: pathlib.Path) -> GraphRegistry:
    registry = GraphRegistry()
    await registry.load(read_config(config), InMemorySaver())
    return registry


@pytest.mark.parametrize("target", ["./agent.py:broken_factory", "json:dumps"])
async def test_factory_that_raises_is_a_config_error(tmp_path: pathlib.Path, target: str) -> None:
    config = _project(tmp_path, {"g": target})
    with pytest.raises(ConfigError) as exc:
        await _load(config)
    assert str(config) in str(exc.value) and '"graphs.g"' in str(exc.value)


async def test_factory_taking_a_config_loads(tmp_path: pathlib.Path) -> None:
    config = _project(tmp_path, {"g": "./agent.py:config_factory"})
    registry = await _load(config)
    assert registry.get("g").nodes == ["shout"]


def test_max_concurrency_key_is_quoted_whole(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "stepstream.json"
    config.write_text(json.dumps({"graphs": {"g": {"path": "./a.py:g", "max_concurrency": -1}}}))
    with pytest.raises(ConfigError, match=re.escape('"graphs.g.max_concurrency"')):
        read_config(config)


def test_state_schema_is_the_state_not_the_context() -> None:
    from langgraph.graph import END, START, StateGraph
    from typing_extensions import TypedDict

    class State(TypedDict, total=False):
        text: str
        hidden: int

    class Input(TypedDict, total=False):
        text: str

    async def node(state: State) -> dict:
        return {}

    builder = StateGraph(State, input_schema=Input)
    builder.add_node("node", node)
    builder.add_edge(START, "node")
    builder.add_edge("node", END)
    loaded = LoadedGraph(GraphSpec("g", "x:y"), builder.compile(), ["node"])
    state = json.loads(loaded.schemas()["state"])
    assert set(state.get("properties", {})) == {"text", "hidden"}, state


async def test_dependencies_folder_is_importable(tmp_path: pathlib.Path) -> None:
    (tmp_path / "helpers_for_stepstream_bug.py").write_text("NAME = 'helper'\n")
    (tmp_path / "uses_helper.py").write_text(
        textwrap.dedent(AGENT)
        + "\nfrom helpers_for_stepstream_bug import NAME\ngraph = _builder().compile()\n"
    )
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({"dependencies": ["."], "graphs": {"g": "./uses_helper.py:graph"}}))
    registry = await _load(config)
    assert registry.get("g").nodes == ["shout"]
