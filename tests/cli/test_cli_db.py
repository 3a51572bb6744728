"""`stepstream db upgrade` as a user runs it: a real process on a SQLite file, checked with sqlite3."""

from __future__ import annotations

import pathlib
import sqlite3
import subprocess
import sys

from alembic.script import ScriptDirectory

from stepstream.server.storage.db import alembic_config

ROOT = pathlib.Path(__file__).resolve().parents[2]
STEPSTREAM = pathlib.Path(sys.executable).parent / "stepstream"
TABLES = {
    "alembic_version",
    "sessions",
    "runs",
    "run_events",
    "checkpoints",
    "checkpoint_blobs",
    "checkpoint_writes",
    "store_items",
    "store_vectors",
    "assistants",
    "assistant_versions",
    "crons",
    "cron_fires",
    "webhook_deliveries",
    "webhook_secrets",
    "replicas",
}


def _upgrade(url: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    assert STEPSTREAM.exists(), f"the console script is not installed at {STEPSTREAM}: run `make setup`"
    result = subprocess.run(
        [str(STEPSTREAM), "db", "upgrade", "--db", url],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"`stepstream db upgrade` exited {result.returncode}:\n{result.stderr}"
    return result


def _schema(path: pathlib.Path) -> list[tuple[str, str, str]]:
    """Every table and index sqlite holds, with the SQL that made it."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT type, name, coalesce(sql, '') FROM sqlite_master "
            "WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
        ).fetchall()
    return [(str(t), str(n), str(s)) for t, n, s in rows]


def _head(url: str) -> str:
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert head is not None
    return head


def test_upgrade_creates_the_tables_and_is_idempotent(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "fresh.db"
    url = f"sqlite+aiosqlite:///{path}"

    first = _upgrade(url, ROOT)
    assert f"schema of {url} is at head" in first.stdout
    assert path.exists()
    schema = _schema(path)
    assert {name for kind, name, _ in schema if kind == "table"} == TABLES
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(_head(url),)]
        # Stored data must survive a second upgrade.
        conn.execute(
            "INSERT INTO sessions (session_id, owner, graph_id, status, created_at, updated_at)"
            " VALUES ('kept', 'local', 'linear', 'idle', 1.0, 1.0)"
        )

    second = _upgrade(url, ROOT)
    assert f"schema of {url} is at head" in second.stdout
    assert _schema(path) == schema
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(_head(url),)]
        assert conn.execute("SELECT session_id, graph_id FROM sessions").fetchall() == [("kept", "linear")]


def test_relative_sqlite_url_is_relative_to_the_working_directory(tmp_path: pathlib.Path) -> None:
    _upgrade("sqlite+aiosqlite:///relative.db", tmp_path)
    assert {name for kind, name, _ in _schema(tmp_path / "relative.db") if kind == "table"} == TABLES
