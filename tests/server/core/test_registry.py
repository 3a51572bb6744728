"""Graph configs: real langgraph.json shapes load; every broken config names its file and key."""

from __future__ import annotations

import json
import pathlib
import sys
import textwrap
import uuid
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.pregel import Pregel

from stepstream.server.core.registry import ConfigError, GraphRegistry, GraphSpec, read_config

GRAPH_MODULE = """
    from typing_extensions import TypedDict

    from langgraph.graph import END, START, StateGraph


    class State(TypedDict, total=False):
        text: str


    async def shout(state: State) -> dict:
        return {"text": state.get("text", "").upper() + "{suffix}"}


    def make_builder() -> StateGraph:
        builder = StateGraph(State)
        builder.add_node("shout", shout)
        builder.add_edge(START, "shout")
        builder.add_edge("shout", END)
        return builder


    builder = make_builder()
    graph = make_builder().compile()


    def factory():
        return make_builder().compile()


    async def async_factory():
        return make_builder()


    def builder_factory():
        return make_builder()


    not_a_graph = 42


    def factory_of_nothing():
        return "a string"
"""


def _write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def _graph_file(path: pathlib.Path, suffix: str) -> pathlib.Path:
    return _write(path, GRAPH_MODULE.replace("{suffix}", suffix))


def _config(folder: pathlib.Path, raw: Any, name: str = "langgraph.json") -> pathlib.Path:
    return _write(folder / name, raw if isinstance(raw, str) else json.dumps(raw, indent=2))


async def _load(config: pathlib.Path) -> GraphRegistry:
    registry = GraphRegistry()
    await registry.load(read_config(config), InMemorySaver())
    return registry


def _assert_names(exc: pytest.ExceptionInfo[ConfigError], config: pathlib.Path, key: str) -> None:
    message = str(exc.value)
    assert str(config) in message, message
    assert f'"{key}"' in message, message


# -- what loads ---------------------------------------------------------------------------------------


async def test_langgraph_json_with_files_and_an_importable_module(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    _graph_file(project / "src" / "agent.py", "!")
    module = f"stepstream_test_pkg_{uuid.uuid4().hex[:8]}"
    _graph_file(tmp_path / "site" / module / "graphs.py", "?")
    _write(tmp_path / "site" / module / "__init__.py", "")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    config = _config(
        project,
        {
            "$schema": "https://langgra.ph/schema.json",
            "python_version": "3.11",
            "dependencies": [".", "langchain-openai"],
            "env": "./.env",
            "graphs": {
                "file_compiled": "./src/agent.py:graph",
                "file_builder": "src/agent.py:builder",
                "file_factory": "./src/agent.py:factory",
                "file_async_factory": "./src/agent.py:async_factory",
                "file_builder_factory": "./src/agent.py:builder_factory",
                "module_compiled": f"{module}.graphs:graph",
                "module_builder": f"{module}.graphs:builder",
            },
        },
    )
    # Paths are relative to the config file's folder, not to the working directory.
    monkeypatch.chdir(tmp_path)

    specs = read_config(config)
    assert [s.graph_id for s in specs] == [
        "file_compiled",
        "file_builder",
        "file_factory",
        "file_async_factory",
        "file_builder_factory",
        "module_compiled",
        "module_builder",
    ]
    agent = (project / "src" / "agent.py").resolve()
    assert {s.graph_id: s.target for s in specs}["file_builder"] == f"{agent}:builder"
    assert {s.graph_id: s.target for s in specs}["module_compiled"] == f"{module}.graphs:graph"
    assert {s.source for s in specs} == {str(config)}

    saver = InMemorySaver()
    registry = GraphRegistry()
    await registry.load(specs, saver)
    assert [g.spec.graph_id for g in registry.all()] == sorted(s.graph_id for s in specs)
    for loaded in registry.all():
        assert isinstance(loaded.graph, Pregel)
        assert loaded.nodes == ["shout"]
        # The service owns persistence: every graph checkpoints to the server's saver.
        assert loaded.graph.checkpointer is saver
        thread = {"configurable": {"thread_id": f"{loaded.spec.graph_id}-1"}}
        result = await loaded.graph.ainvoke({"text": "hi"}, thread)
        suffix = "?" if loaded.spec.graph_id.startswith("module") else "!"
        assert result == {"text": f"HI{suffix}"}, loaded.spec.graph_id
        assert (await loaded.graph.aget_state(thread)).values == result
        schema = json.loads(loaded.schemas()["input"])
        assert schema["properties"] == {"text": {"title": "Text", "type": "string"}}


async def test_a_compiled_graph_is_not_changed_by_serving_it(tmp_path: pathlib.Path) -> None:
    _graph_file(tmp_path / "agent.py", "")
    config = _config(tmp_path, {"graphs": {"g": "./agent.py:graph"}}, "stepstream.json")
    registry = await _load(config)
    served = registry.get("g").graph
    assert served.checkpointer is not None
    # The user's module object keeps its own (absent) checkpointer.
    module = sys.modules["stepstream_graph_g"]
    assert module.graph.checkpointer is None
    assert served is not module.graph


def test_object_entries_carry_description_and_max_concurrency(tmp_path: pathlib.Path) -> None:
    config = _config(
        tmp_path,
        {
            "graphs": {
                "plain": "./agent.py:graph",
                "tuned": {"path": "./agent.py:graph", "description": "tuned one", "max_concurrency": 8},
            }
        },
        "stepstream.json",
    )
    agent = str((tmp_path / "agent.py").resolve())
    assert read_config(config) == [
        GraphSpec("plain", f"{agent}:graph", "", 0, str(config)),
        GraphSpec("tuned", f"{agent}:graph", "tuned one", 8, str(config)),
    ]


# -- what is refused, and how it is named -------------------------------------------------------------


def test_config_file_missing(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "nowhere" / "langgraph.json"
    with pytest.raises(ConfigError) as exc:
        read_config(missing)
    assert str(missing) in str(exc.value) and "no such file" in str(exc.value)


def test_bad_json(tmp_path: pathlib.Path) -> None:
    config = _config(tmp_path, '{"graphs": {"g": "./agent.py:graph",}}')
    with pytest.raises(ConfigError) as exc:
        read_config(config)
    assert str(config) in str(exc.value) and "not valid JSON" in str(exc.value)


@pytest.mark.parametrize(
    "raw",
    [
        {"dependencies": ["."]},
        {"graphs": {}},
        {"graphs": ["./agent.py:graph"]},
        {"graphs": "./agent.py:graph"},
        [],
    ],
    ids=["absent", "empty", "list", "string", "not-an-object"],
)
def test_missing_graphs(tmp_path: pathlib.Path, raw: Any) -> None:
    config = _config(tmp_path, raw)
    with pytest.raises(ConfigError) as exc:
        read_config(config)
    _assert_names(exc, config, "graphs")


@pytest.mark.parametrize(
    "entry",
    ["./agent.py", "agent", {"path": "./agent.py"}, {"description": "no path"}, 7, None],
    ids=["file-no-colon", "module-no-colon", "object-no-colon", "object-no-path", "number", "null"],
)
def test_entry_without_path_and_attribute(tmp_path: pathlib.Path, entry: Any) -> None:
    config = _config(tmp_path, {"graphs": {"ok": "./agent.py:graph", "bad": entry}})
    with pytest.raises(ConfigError) as exc:
        read_config(config)
    _assert_names(exc, config, "graphs.bad")
    assert "path:attribute" in str(exc.value)


@pytest.mark.parametrize("value", [-1, "8", 2.5])
def test_bad_max_concurrency(tmp_path: pathlib.Path, value: Any) -> None:
    config = _config(tmp_path, {"graphs": {"g": {"path": "./agent.py:graph", "max_concurrency": value}}})
    with pytest.raises(ConfigError) as exc:
        read_config(config)
    _assert_names(exc, config, "graphs.g.max_concurrency")
    assert "max_concurrency" in str(exc.value)


async def test_graph_file_missing(tmp_path: pathlib.Path) -> None:
    config = _config(tmp_path, {"graphs": {"gone": "./src/gone.py:graph"}})
    with pytest.raises(ConfigError) as exc:
        await _load(config)
    _assert_names(exc, config, "graphs.gone")
    assert "no such file" in str(exc.value)
    assert str((tmp_path / "src" / "gone.py").resolve()) in str(exc.value)


@pytest.mark.parametrize(
    "source, reason",
    [
        ("import no_such_module_for_stepstream_tests\n", "ModuleNotFoundError"),
        ("def broken(:\n", "SyntaxError"),
        ("raise RuntimeError('graph module refuses to load')\n", "graph module refuses to load"),
    ],
    ids=["import-error", "syntax-error", "raises"],
)
async def test_graph_file_fails_to_import(tmp_path: pathlib.Path, source: str, reason: str) -> None:
    _write(tmp_path / "agent.py", source)
    config = _config(tmp_path, {"graphs": {"agent": "./agent.py:graph"}})
    with pytest.raises(ConfigError) as exc:
        await _load(config)
    _assert_names(exc, config, "graphs.agent")
    assert "import failed" in str(exc.value) and reason in str(exc.value)


async def test_module_fails_to_import(tmp_path: pathlib.Path) -> None:
    config = _config(tmp_path, {"graphs": {"mod": "no_such_package_for_stepstream.graphs:graph"}})
    with pytest.raises(ConfigError) as exc:
        await _load(config)
    _assert_names(exc, config, "graphs.mod")
    assert "ModuleNotFoundError" in str(exc.value)


@pytest.mark.parametrize("target", ["./agent.py:missing", "json:no_such_attribute"], ids=["file", "module"])
async def test_attribute_missing(tmp_path: pathlib.Path, target: str) -> None:
    _graph_file(tmp_path / "agent.py", "")
    config = _config(tmp_path, {"graphs": {"g": target}})
    with pytest.raises(ConfigError) as exc:
        await _load(config)
    _assert_names(exc, config, "graphs.g")
    assert "no attribute" in str(exc.value)


@pytest.mark.parametrize(
    "target, kind",
    [
        ("./agent.py:not_a_graph", "int"),
        ("./agent.py:factory_of_nothing", "str"),
        ("json:JSONDecoder", "JSONDecoder"),
    ],
    ids=["number", "factory-of-a-string", "module-class"],
)
async def test_not_a_graph(tmp_path: pathlib.Path, target: str, kind: str) -> None:
    _graph_file(tmp_path / "agent.py", "")
    config = _config(tmp_path, {"graphs": {"g": target}})
    with pytest.raises(ConfigError) as exc:
        await _load(config)
    _assert_names(exc, config, "graphs.g")
    assert f"not a graph but {kind}" in str(exc.value)


async def test_the_first_broken_graph_is_named_among_good_ones(tmp_path: pathlib.Path) -> None:
    _graph_file(tmp_path / "agent.py", "")
    config = _config(
        tmp_path,
        {"graphs": {"one": "./agent.py:graph", "two": "./agent.py:not_a_graph", "three": "./agent.py:graph"}},
    )
    with pytest.raises(ConfigError) as exc:
        await _load(config)
    _assert_names(exc, config, "graphs.two")
    assert '"graphs.one"' not in str(exc.value) and '"graphs.three"' not in str(exc.value)
