"""A consistency check of a stepstream database, for tests that abuse a server (fuzzing, faults).

It reads the tables directly (sync SQLAlchemy) and lists every broken invariant:
rows pointing at nothing, runs whose events have gaps or disagree with the
run's status, more than one running run per session, checkpoints of deleted
sessions, unreadable JSON. An empty list means nothing is half-written.
"""

from __future__ import annotations

import collections
import json
from typing import Any

import sqlalchemy as sa

from stepstream.server.storage.checkpoint_tables import checkpoints
from stepstream.server.storage.schema import run_events, runs, sessions

_TERMINAL_BY_STATUS = {
    "succeeded": "run_finished",
    "interrupted": "run_finished",
    "failed": "run_failed",
    "cancelled": "run_cancelled",
}
_TERMINAL = set(_TERMINAL_BY_STATUS.values())


def sync_url(url: str) -> str:
    return url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")


def problems(db_url: str) -> list[str]:
    engine = sa.create_engine(sync_url(db_url))
    try:
        with engine.connect() as conn:
            return _check(conn)
    finally:
        engine.dispose()


def _check(conn: sa.Connection) -> list[str]:
    found: list[str] = []
    session_rows = {r.session_id: r for r in conn.execute(sa.select(sessions))}
    run_rows = {r.run_id: r for r in conn.execute(sa.select(runs))}
    events: dict[str, list[Any]] = collections.defaultdict(list)
    for e in conn.execute(sa.select(run_events).order_by(run_events.c.run_id, run_events.c.seq)):
        events[e.run_id].append(e)
    for s in session_rows.values():
        _json(found, f"session {s.session_id} metadata_json", s.metadata_json)
    running = collections.Counter(r.session_id for r in run_rows.values() if r.status == "running")
    found += [f"session {sid} has {n} running runs" for sid, n in running.items() if n > 1]
    for run in run_rows.values():
        if run.session_id not in session_rows:
            found.append(f"run {run.run_id} belongs to missing session {run.session_id}")
        if session_rows.get(run.session_id) is not None and session_rows[run.session_id].owner != run.owner:
            found.append(f"run {run.run_id} and its session have different owners")
        for column in ("options_json", "input_json", "command_json", "values_json", "interrupts_json"):
            _json(found, f"run {run.run_id} {column}", getattr(run, column))
        found += _check_events(run, events.pop(run.run_id, []))
    found += [f"events of missing run {run_id}" for run_id in events]
    thread_ids = {r[0] for r in conn.execute(sa.select(checkpoints.c.thread_id).distinct())}
    found += [f"checkpoints of missing session {t}" for t in sorted(thread_ids - set(session_rows))]
    return found


def _check_events(run: Any, rows: list[Any]) -> list[str]:
    found = []
    seqs = [e.seq for e in rows]
    if seqs != list(range(1, len(seqs) + 1)):
        found.append(f"run {run.run_id} events are not 1..n: {seqs[:5]}...{seqs[-5:]}")
    if any(e.session_id != run.session_id for e in rows):
        found.append(f"run {run.run_id} has events filed under another session")
    kinds = [e.kind for e in rows]
    terminal = [k for k in kinds if k in _TERMINAL]
    if run.status in _TERMINAL_BY_STATUS:
        if not kinds or kinds[-1] != _TERMINAL_BY_STATUS[run.status] or len(terminal) != 1:
            found.append(f"run {run.run_id} is {run.status} but its events end {kinds[-3:]}")
        elif run.last_seq != seqs[-1]:
            found.append(f"run {run.run_id} last_seq {run.last_seq} but its last event is {seqs[-1]}")
        if run.ended_at is None:
            found.append(f"run {run.run_id} is {run.status} without ended_at")
    elif run.status in ("queued", "running"):
        if terminal:
            found.append(f"run {run.run_id} is {run.status} but has a terminal event {terminal}")
    else:
        found.append(f"run {run.run_id} has unknown status {run.status!r}")
    for e in rows:
        try:
            body = json.loads(e.body)
        except ValueError:
            found.append(f"run {run.run_id} event {e.seq} body is not JSON")
            continue
        if not isinstance(body, dict):
            found.append(f"run {run.run_id} event {e.seq} body is not an object")
    return found


def _json(found: list[str], what: str, text: str | None) -> None:
    if text is None:
        return
    try:
        json.loads(text)
    except ValueError:
        found.append(f"{what} is not JSON")
