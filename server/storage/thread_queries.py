"""Session queries of LangGraph's HTTP API (threads): search by metadata, patch, bind to a graph.

Each function runs on one connection (the reader's or the writer's `transact`),
so a read-modify-write such as a metadata patch is one transaction.

Metadata filters are JSON containment (`{"a": 1}` matches metadata holding a == 1, as
LangGraph's server filters). The metadata column is text on every back end, so the
owner's sessions are scanned newest first and matched here, in pages; an index on
metadata can replace this scan behind the same function when tenants hold very many.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import sqlalchemy as sa

from stepstream.server.core import records as rec
from stepstream.server.core.store import session_from_row
from stepstream.server.storage.schema import run_events, sessions

SCAN_PAGE = 500


def contains(have: Any, want: Any) -> bool:
    """JSON containment, as PostgreSQL's `@>`: objects by key, lists by members, scalars equal."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(k in have and contains(have[k], v) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and all(any(contains(h, w) for h in have) for w in want)
    return bool(have == want and type(have) is type(want)) or (
        isinstance(have, int | float) and isinstance(want, int | float) and have == want
    )


def search_sessions(
    conn: sa.Connection,
    owner: str,
    metadata: Mapping[str, Any],
    statuses: Sequence[str],
    session_ids: Sequence[str],
    limit: int,
    offset: int,
) -> list[rec.Session]:
    """The owner's sessions matching every filter, newest first, `offset` skipped, at most `limit`."""
    query = sa.select(sessions).where(sessions.c.owner == owner)
    if statuses:
        query = query.where(sessions.c.status.in_(list(statuses)))
    if session_ids:
        query = query.where(sessions.c.session_id.in_(list(session_ids)))
    query = query.order_by(sessions.c.created_at.desc(), sessions.c.session_id.desc())
    found: list[rec.Session] = []
    skipped = 0
    start = 0
    while len(found) < limit:
        rows = conn.execute(query.limit(SCAN_PAGE).offset(start)).mappings().all()
        for row in rows:
            session = session_from_row(row)
            if metadata and not contains(session.metadata, dict(metadata)):
                continue
            if skipped < offset:
                skipped += 1
                continue
            found.append(session)
            if len(found) >= limit:
                break
        if len(rows) < SCAN_PAGE:
            break
        start += SCAN_PAGE
    return found


def patch_session(
    conn: sa.Connection, owner: str, session_id: str, metadata: Mapping[str, Any], now: float
) -> rec.Session | None:
    """Merge `metadata` into the session's (keys given replace keys held); None if not the owner's."""
    row = (
        conn.execute(
            sa.select(sessions).where(sessions.c.session_id == session_id, sessions.c.owner == owner)
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    session = session_from_row(row)
    merged = {**session.metadata, **metadata}
    conn.execute(
        sessions.update()
        .where(sessions.c.session_id == session_id)
        .values(metadata_json=orjson.dumps(merged).decode(), updated_at=now)
    )
    return rec.Session(
        session.session_id, owner, session.graph_id, session.status, merged, session.created_at, now
    )


def bind_session(
    conn: sa.Connection,
    owner: str,
    session_id: str,
    graph_id: str,
    metadata: Mapping[str, Any],
    rebind: bool,
) -> str | None:
    """Give a session created without a graph its graph (with `rebind`, whatever graph it had),
    and merge `metadata` into its metadata. The session's graph afterwards; None if not the
    owner's."""
    row = (
        conn.execute(
            sa.select(sessions.c.graph_id, sessions.c.metadata_json).where(
                sessions.c.session_id == session_id, sessions.c.owner == owner
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    bound = graph_id if rebind else row["graph_id"] or graph_id
    held = orjson.loads(row["metadata_json"] or "{}")
    merged = {**held, **metadata}
    if bound != row["graph_id"] or merged != held:
        conn.execute(
            sessions.update()
            .where(sessions.c.session_id == session_id)
            .values(graph_id=bound, metadata_json=orjson.dumps(merged).decode())
        )
    return str(bound)


def last_event_seq(conn: sa.Connection, run_id: str) -> int:
    query = sa.select(sa.func.max(run_events.c.seq)).where(run_events.c.run_id == run_id)
    return int(conn.execute(query).scalar() or 0)
