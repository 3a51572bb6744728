"""The core knows nothing of SQL or gRPC, and reaches storage only through its ports.

Read from the source (the AST of every module of server/core), so a violation is
found whichever way it would be exercised at run time.
"""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

from stepstream.server.core.ports import RunSaver

ROOT = pathlib.Path(__file__).resolve().parents[3]
CORE = ROOT / "server" / "core"
SERVER = ROOT / "server"
# Drivers and toolkits of the database, and the gRPC runtime: the doors' and storage's business.
FORBIDDEN = ("sqlalchemy", "sqlite3", "aiosqlite", "asyncpg", "psycopg", "alembic", "grpc")
# The one module of the core that may name storage: it puts the replica together.
COMPOSITION_ROOT = "app.py"
SQL = re.compile(
    r"\b(SELECT\s+\S.*\bFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(TABLE|INDEX)"
    r"|pg_notify|ON\s+CONFLICT|FOR\s+UPDATE)\b",
    re.IGNORECASE | re.DOTALL,
)


def _modules(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(folder.rglob("*.py"))


def _imported(tree: ast.Module) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _strings(tree: ast.Module) -> list[str]:
    """String constants that are not docstrings (prose may name a statement; code may not hold one)."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_the_scan_sees_the_core() -> None:
    modules = {path.name for path in _modules(CORE)}
    assert {"app.py", "executor.py", "runs.py", "ports.py"} <= modules


@pytest.mark.parametrize("path", _modules(CORE), ids=lambda p: p.name)
def test_no_core_module_imports_a_database_driver_or_grpc(path: pathlib.Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    bad = [name for name in _imported(tree) if name.split(".")[0] in FORBIDDEN]
    assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", _modules(CORE), ids=lambda p: p.name)
def test_no_core_module_holds_sql(path: pathlib.Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    sql = [text for text in _strings(tree) if SQL.search(text)]
    assert not sql, f"{path.name} holds SQL text: {sql}"


@pytest.mark.parametrize("path", _modules(CORE), ids=lambda p: p.name)
def test_the_core_reaches_storage_only_through_its_ports(path: pathlib.Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    storage = [name for name in _imported(tree) if name.startswith("stepstream.server.storage")]
    if path.name == COMPOSITION_ROOT:
        assert storage == ["stepstream.server.storage.backend"]
    else:
        assert not storage, f"{path.name} imports {storage}; use the Protocols of core/ports.py"


def test_no_saver_hook_is_looked_up_by_name() -> None:
    hooks = {name for name in vars(RunSaver) if not name.startswith("_")}
    assert {"checkpoint_save", "deferred_commits", "new_thread"} <= hooks
    found = []
    for path in _modules(SERVER):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in hooks
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, f"saver hooks looked up by name at {found}"


def test_the_sql_pattern_finds_sql() -> None:
    # The scan above is only as good as the pattern: it must catch what storage holds.
    assert SQL.search("SELECT pg_notify(:channel, :payload)")
    assert SQL.search("UPDATE runs SET status = 'queued'")
    assert SQL.search("insert into run_events (run_id) values (?)")
    assert not SQL.search("a run is selected from the queue and updated")


# What the core is made of; a door (server/api/, server/http/) calls the core's operations, never these.
CORE_PARTS = ("store", "runs", "eventlog", "registry", "sessions", "saver", "database", "engine", "executor")


@pytest.mark.parametrize(
    "path", _modules(SERVER / "api") + _modules(SERVER / "http"), ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_the_doors_call_the_cores_operations_not_its_parts(path: pathlib.Path) -> None:
    reached = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (isinstance(node, ast.Attribute) and node.attr in CORE_PARTS):
            continue
        owner = node.value
        name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
        if name in ("core", "_core"):
            reached.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert not reached, f"a door reaches into the core: {reached}"
