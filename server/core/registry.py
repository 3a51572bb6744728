"""The graphs a server serves, loaded from a stepstream or langgraph.json config file.

    {"graphs": {"research": "./examples/research/graph.py:graph",
                "agent": {"path": "my_pkg.agent:build", "description": "...", "max_concurrency": 8}}}

Each entry names a module or a file (relative to the config file) and an
attribute: a compiled graph, a StateGraph builder, or a function returning
either. A top-level "store" section configures the long-term store as LangGraph's does, and a
graph entry's `"store": false` keeps the server's store from it (store_config.py). Other
langgraph.json keys are ignored.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import json
import pathlib
import sys
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import StateGraph
from langgraph.pregel import Pregel
from pydantic import TypeAdapter

from stepstream.server.core.errors import NotFound
from stepstream.server.core.store_config import (
    StoreConfigError,
    StoreSection,
    graph_uses_store,
    parse_store_section,
)

AnyGraph = Pregel[Any, Any, Any, Any]


class ConfigError(Exception):
    """A config file that cannot be served; the message names file, key and reason."""


@dataclasses.dataclass(frozen=True)
class GraphSpec:
    graph_id: str
    target: str
    description: str = ""
    max_concurrency: int = 0
    # The config file that named it, for error messages.
    source: str = ""
    # Folders its modules import from (langgraph.json "dependencies" that are local paths).
    import_paths: tuple[str, ...] = ()
    # Whether its runs see the server's long-term store (the entry's "store", true by default).
    store: bool = True


@dataclasses.dataclass
class LoadedGraph:
    spec: GraphSpec
    graph: AnyGraph
    nodes: list[str]
    _schemas: dict[str, str] | None = None

    def schemas(self) -> dict[str, str]:
        """Input, output and state JSON schemas (computed on first use)."""
        if self._schemas is None:
            self._schemas = {
                "input": _schema_text(self.graph.get_input_jsonschema),
                "output": _schema_text(self.graph.get_output_jsonschema),
                "state": _schema_text(self._state_jsonschema),
            }
        return self._schemas

    def _state_jsonschema(self) -> dict[str, Any]:
        # A StateGraph keeps its state type on the builder; other graphs' output is their state.
        state_type = getattr(getattr(self.graph, "builder", None), "state_schema", None)
        if state_type is None:
            return self.graph.get_output_jsonschema()
        schema: dict[str, Any] = TypeAdapter(state_type).json_schema()
        return schema


def _schema_text(fn: Any) -> str:
    try:
        return json.dumps(fn())
    except Exception:  # a graph with exotic types still serves; it just has no schema
        return "{}"


def _read_json(file: pathlib.Path) -> Any:
    try:
        return json.loads(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{file}: not valid JSON: {exc}") from None


def read_store_config(path: str | pathlib.Path) -> StoreSection:
    """The config's checked "store" section (empty when it has none)."""
    file = pathlib.Path(path)
    raw = _read_json(file)
    try:
        return parse_store_section(raw.get("store") if isinstance(raw, dict) else None, file)
    except StoreConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None


def read_config(path: str | pathlib.Path) -> list[GraphSpec]:
    """The graphs a config names; ConfigError (file, key, reason) for anything not servable,
    its "store" section included."""
    file = pathlib.Path(path)
    raw = _read_json(file)
    if not isinstance(raw, dict) or not isinstance(raw.get("graphs"), dict) or not raw["graphs"]:
        raise ConfigError(f'{file}: key "graphs": must be an object mapping graph ids to "path:attribute"')
    read_store_config(file)
    import_paths = _local_dependencies(file, raw.get("dependencies"))
    specs = []
    for graph_id, entry in raw["graphs"].items():
        where = f'{file}: key "graphs.{graph_id}"'
        if isinstance(entry, str):
            entry = {"path": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or ":" not in entry["path"]:
            raise ConfigError(f'{where}: must be "path:attribute" or an object with such a "path"')
        max_concurrency = entry.get("max_concurrency", 0)
        if not isinstance(max_concurrency, int) or max_concurrency < 0:
            raise ConfigError(f'{file}: key "graphs.{graph_id}.max_concurrency": must be a whole number >= 0')
        target = entry["path"]
        module_part, _, attr = target.rpartition(":")
        if module_part.endswith(".py") or "/" in module_part:
            target = f"{(file.parent / module_part).resolve()}:{attr}"
        description = str(entry.get("description", ""))
        try:
            store = graph_uses_store(graph_id, entry)
        except StoreConfigError as exc:
            raise ConfigError(f"{file}: {exc}") from None
        specs.append(
            GraphSpec(graph_id, target, description, max_concurrency, str(file), import_paths, store)
        )
    return specs


def _local_dependencies(file: pathlib.Path, dependencies: Any) -> tuple[str, ...]:
    """Folders named in "dependencies" (packages to install are left to the deployment)."""
    if not isinstance(dependencies, list):
        return ()
    folders = [d for d in dependencies if isinstance(d, str) and d.startswith((".", "/"))]
    return tuple(str((file.parent / d).resolve()) for d in folders)


def read_env(path: str | pathlib.Path) -> dict[str, str]:
    """The "env" of a langgraph.json: an object, or the path of a .env file beside it."""
    file = pathlib.Path(path)
    env = json.loads(file.read_text()).get("env")
    if isinstance(env, dict):
        return {str(k): str(v) for k, v in env.items()}
    if not isinstance(env, str):
        return {}
    values = {}
    env_file = file.parent / env
    if not env_file.exists():
        raise ConfigError(f'{file}: key "env": no such file {env_file}')
    for line in env_file.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip().removeprefix("export ").strip()] = value.strip().strip("\"'")
    return values


def _where(spec: GraphSpec) -> str:
    if spec.source:
        return f'{spec.source}: key "graphs.{spec.graph_id}" ({spec.target})'
    return f"graph {spec.graph_id!r} ({spec.target})"


def _import_target(spec: GraphSpec) -> Any:
    module_part, _, attr = spec.target.rpartition(":")
    where = _where(spec)
    for folder in spec.import_paths:
        if folder not in sys.path:
            sys.path.append(folder)
    try:
        if module_part.endswith(".py"):
            path = pathlib.Path(module_part)
            if not path.exists():
                raise ConfigError(f"{where}: no such file {path}")
            name = f"stepstream_graph_{spec.graph_id}"
            mod_spec = importlib.util.spec_from_file_location(name, path)
            if mod_spec is None or mod_spec.loader is None:
                raise ConfigError(f"{where}: cannot load {path}")
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules[name] = module
            mod_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_part)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"{where}: import failed: {type(exc).__name__}: {exc}") from exc
    if not hasattr(module, attr):
        raise ConfigError(f"{where}: module has no attribute {attr!r}")
    return getattr(module, attr)


async def _materialise(spec: GraphSpec, obj: Any, saver: BaseCheckpointSaver[Any]) -> AnyGraph:
    if not isinstance(obj, (Pregel, StateGraph)) and callable(obj):
        # A factory, as langgraph.json allows: with no argument, or with a RunnableConfig.
        try:
            positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            takes_config = any(p.kind in positional for p in inspect.signature(obj).parameters.values())
        except (TypeError, ValueError):
            takes_config = False
        try:
            obj = obj(RunnableConfig(configurable={})) if takes_config else obj()
            if inspect.isawaitable(obj):
                obj = await obj
        except Exception as exc:
            raise ConfigError(f"{_where(spec)}: the factory failed: {type(exc).__name__}: {exc}") from exc
    if isinstance(obj, StateGraph):
        return obj.compile(checkpointer=saver)
    if isinstance(obj, Pregel):
        # The service owns persistence: every graph checkpoints to the shared database.
        return obj.copy(update={"checkpointer": saver})
    raise ConfigError(f"{_where(spec)}: not a graph but {type(obj).__name__}")


class GraphRegistry:
    def __init__(self) -> None:
        self._graphs: dict[str, LoadedGraph] = {}

    async def load(self, specs: list[GraphSpec], saver: BaseCheckpointSaver[Any]) -> None:
        for spec in specs:
            graph = await _materialise(spec, _import_target(spec), saver)
            nodes = [n for n in graph.nodes if not n.startswith("__")]
            self._graphs[spec.graph_id] = LoadedGraph(spec, graph, nodes)

    def get(self, graph_id: str) -> LoadedGraph:
        try:
            return self._graphs[graph_id]
        except KeyError:
            known = ", ".join(sorted(self._graphs)) or "none"
            raise NotFound(f"graph {graph_id!r} is not served here (known: {known})") from None

    def all(self) -> list[LoadedGraph]:
        return [self._graphs[k] for k in sorted(self._graphs)]

    def ids(self) -> list[str]:
        return sorted(self._graphs)
