"""The config's `store` section: what LangGraph's accepts is read, what cannot be honoured is
refused naming file, key and reason (one fixture file per refusal, in store_configs/)."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from stepstream.server.core.app import Core
from stepstream.server.core.registry import ConfigError, read_config, read_store_config
from stepstream.server.settings import ServerSettings

FIXTURES = pathlib.Path(__file__).parent / "store_configs"

# fixture file -> (the key named, a piece of the reason)
REFUSED = {
    "store_not_object": ("store", "must be an object"),
    "store_unknown_key": ("store.indexes", "unknown key; store takes index, ttl"),
    "store_custom_path": ("store.path", "custom store implementation is not supported"),
    "index_not_object": ("store.index", "must be an object"),
    "index_unknown_key": ("store.index.distance_type", "unknown key"),
    "index_dims_missing": ("store.index.dims", "positive whole number, got None"),
    "index_dims_zero": ("store.index.dims", "positive whole number, got 0"),
    "index_dims_text": ("store.index.dims", "positive whole number, got '1536'"),
    "index_dims_bool": ("store.index.dims", "positive whole number, got True"),
    "index_embed_missing": ("store.index.embed", "must name the embedding function"),
    "index_embed_not_text": ("store.index.embed", "must name the embedding function"),
    "index_fields_text": ("store.index.fields", "must be a list of JSON paths"),
    "index_fields_empty": ("store.index.fields", "must be a list of JSON paths"),
    "ttl_not_object": ("store.ttl", "must be an object"),
    "ttl_unknown_key": ("store.ttl.strategy", "unknown key"),
    "ttl_default_negative": ("store.ttl.default_ttl", "positive number of minutes, got -5"),
    "ttl_default_text": ("store.ttl.default_ttl", "positive number of minutes, got '1440'"),
    "ttl_sweep_zero": ("store.ttl.sweep_interval_minutes", "positive number of minutes, got 0"),
    "ttl_refresh_not_bool": ("store.ttl.refresh_on_read", "must be true or false"),
    "graph_store_not_bool": ("graphs.g.store", "must be true"),
}


def test_every_fixture_has_its_expectation() -> None:
    assert {p.stem for p in FIXTURES.glob("*.json")} == set(REFUSED)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_naming_file_key_and_reason(name: str) -> None:
    key, reason = REFUSED[name]
    config = FIXTURES / f"{name}.json"
    # read_config is what `serve` checks before it starts anything.
    with pytest.raises(ConfigError) as exc:
        read_config(config)
    message = str(exc.value)
    assert message.startswith(f'{config}: key "{key}": '), message
    assert reason in message


def _write(tmp_path: pathlib.Path, raw: dict[str, Any], name: str = "langgraph.json") -> pathlib.Path:
    config = tmp_path / name
    config.write_text(json.dumps(raw))
    return config


def test_langgraph_json_store_section_is_read(tmp_path: pathlib.Path) -> None:
    config = _write(
        tmp_path,
        {
            "dependencies": ["."],
            "graphs": {"g": "./agent.py:graph"},
            "store": {
                "index": {"dims": 64, "embed": "./embed.py:embed_words", "fields": ["text", "tags[*]"]},
                "ttl": {"default_ttl": 1440, "refresh_on_read": False, "sweep_interval_minutes": 30},
            },
        },
    )
    section = read_store_config(config)
    assert section.source == str(config)
    assert section.as_langgraph() == {
        # A file path is relative to the config file, as graph paths are.
        "index": {
            "dims": 64,
            "embed": f"{tmp_path.resolve() / 'embed.py'}:embed_words",
            "fields": ["text", "tags[*]"],
        },
        "ttl": {"default_ttl": 1440, "refresh_on_read": False, "sweep_interval_minutes": 30},
    }


def test_module_embed_and_default_fields(tmp_path: pathlib.Path) -> None:
    config = _write(
        tmp_path,
        {"graphs": {"g": "./agent.py:graph"}, "store": {"index": {"dims": 8, "embed": "pkg.mod:fn"}}},
    )
    assert read_store_config(config).as_langgraph() == {
        "index": {"dims": 8, "embed": "pkg.mod:fn", "fields": ["$"]}
    }


def test_no_store_section_is_a_plain_store(tmp_path: pathlib.Path) -> None:
    config = _write(tmp_path, {"graphs": {"g": "./agent.py:graph"}})
    assert read_store_config(config).as_langgraph() == {}


def test_graphs_use_the_store_unless_they_opt_out(tmp_path: pathlib.Path) -> None:
    config = _write(
        tmp_path,
        {
            "graphs": {
                "plain": "./agent.py:graph",
                "with": {"path": "./agent.py:graph", "store": True},
                "without": {"path": "./agent.py:graph", "store": False},
            }
        },
    )
    assert {spec.graph_id: spec.store for spec in read_config(config)} == {
        "plain": True,
        "with": True,
        "without": False,
    }


async def test_an_embedder_that_cannot_load_is_refused_at_start(tmp_path: pathlib.Path) -> None:
    (tmp_path / "agent.py").write_text(
        "from langgraph.graph import StateGraph, START\n"
        "from typing import TypedDict\n"
        "class S(TypedDict):\n    x: int\n"
        "b = StateGraph(S)\nb.add_node('n', lambda s: s)\nb.add_edge(START, 'n')\ngraph = b.compile()\n"
    )
    config = _write(
        tmp_path,
        {"graphs": {"g": "./agent.py:graph"}, "store": {"index": {"dims": 8, "embed": "./missing.py:embed"}}},
        "stepstream.json",
    )
    settings = ServerSettings(db_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", config_path=str(config))
    core = Core(settings)
    try:
        with pytest.raises(ConfigError) as exc:
            await core.start()
    finally:
        await core.stop(0)
    message = str(exc.value)
    assert message.startswith(f'{config}: key "store.index.embed": ')
    assert "missing.py" in message
