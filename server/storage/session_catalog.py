"""Sessions as users search and change them: filtered lists, metadata patches, a graph bound
at the first run (a LangGraph thread is created without one), the last event of a run.

Implements core/ports.py `SessionCatalog`. A read-modify-write (a metadata patch, a bind)
runs as one transaction on the writer's connection.

Metadata filters are JSON containment (`{"a": 1}` matches metadata holding a == 1). The
column is text on every back end; PostgreSQL decides containment itself (`::jsonb @>`);
SQLite narrows by `json_extract` per key holding a string, and each row the database
returns is checked here exactly (`json_contains`), so both give the same answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from stepstream.server.core import records as rec
from stepstream.server.core.jsonio import json_contains
from stepstream.server.storage.batch import GroupCommitWriter
from stepstream.server.storage.reads import Reader
from stepstream.server.storage.records import session_from_row
from stepstream.server.storage.schema import run_events, sessions

# Rows read per query while filtering beyond what the database decided.
SCAN_PAGE = 500


def _metadata_filter(dialect: str, metadata: Mapping[str, Any]) -> list[sa.ColumnElement[bool]]:
    if not metadata:
        return []
    if dialect == "postgresql":
        wanted = sa.cast(sa.literal(orjson.dumps(dict(metadata)).decode()), postgresql.JSONB)
        return [sa.cast(sessions.c.metadata_json, postgresql.JSONB).op("@>")(wanted)]
    # SQLite: a JSON string is extracted as text, so equality is exact for string values; other
    # values (numbers, booleans, objects) are left to the check on each row.
    return [
        sa.func.json_extract(sessions.c.metadata_json, f'$."{key}"') == value
        for key, value in metadata.items()
        if isinstance(value, str) and '"' not in key and "\\" not in key
    ]


class SessionCatalog:
    def __init__(self, writer: GroupCommitWriter, reader: Reader, dialect: str) -> None:
        self._writer = writer
        self._reader = reader
        self._dialect = dialect

    async def search(self, owner: str, query: rec.SessionQuery) -> list[rec.Session]:
        """The owner's sessions matching every filter of `query`, in its order, paged."""
        return await self._reader.run(lambda conn: self._search(conn, owner, query))

    def _search(self, conn: sa.Connection, owner: str, query: rec.SessionQuery) -> list[rec.Session]:
        select = sa.select(sessions).where(sessions.c.owner == owner)
        if query.statuses:
            select = select.where(sessions.c.status.in_([str(s) for s in query.statuses]))
        if query.graph_id:
            select = select.where(sessions.c.graph_id == query.graph_id)
        if query.session_ids:
            select = select.where(sessions.c.session_id.in_(list(query.session_ids)))
        select = select.where(*_metadata_filter(self._dialect, query.metadata))
        column = sessions.c.updated_at if query.sort is rec.SessionSort.UPDATED_AT else sessions.c.created_at
        if query.ascending:
            select = select.order_by(column.asc(), sessions.c.session_id.asc())
        else:
            select = select.order_by(column.desc(), sessions.c.session_id.desc())
        found: list[rec.Session] = []
        skipped = start = 0
        while len(found) < query.limit:
            rows = conn.execute(select.limit(SCAN_PAGE).offset(start)).mappings().all()
            for row in rows:
                session = session_from_row(row)
                if query.metadata and not json_contains(session.metadata, query.metadata):
                    continue
                if skipped < query.offset:
                    skipped += 1
                    continue
                found.append(session)
                if len(found) >= query.limit:
                    break
            if len(rows) < SCAN_PAGE:
                break
            start += SCAN_PAGE
        return found

    async def patch(
        self, owner: str, session_id: str, metadata: Mapping[str, Any], now: float
    ) -> rec.Session | None:
        """Merge `metadata` into the session's: keys given replace keys held, a null removes
        its key. None if the session is not the owner's."""
        return await self._writer.transact(lambda conn: _patch(conn, owner, session_id, metadata, now))

    async def bind(
        self, owner: str, session_id: str, graph_id: str, metadata: Mapping[str, Any], rebind: bool
    ) -> str | None:
        """Give a session created without a graph its graph (with `rebind`, whatever graph it
        had) and merge `metadata` into its own. The session's graph afterwards; None if not the
        owner's."""
        return await self._writer.transact(
            lambda conn: _bind(conn, owner, session_id, graph_id, metadata, rebind)
        )

    async def last_event_seq(self, run_id: str) -> int:
        query = sa.select(sa.func.max(run_events.c.seq)).where(run_events.c.run_id == run_id)
        return await self._reader.run(lambda conn: int(conn.execute(query).scalar() or 0))


def _patch(
    conn: sa.Connection, owner: str, session_id: str, metadata: Mapping[str, Any], now: float
) -> rec.Session | None:
    where = (sessions.c.session_id == session_id, sessions.c.owner == owner)
    row = conn.execute(sa.select(sessions).where(*where)).mappings().first()
    if row is None:
        return None
    session = session_from_row(row)
    merged = {**session.metadata, **metadata}
    merged = {key: value for key, value in merged.items() if value is not None}
    conn.execute(
        sessions.update().where(*where).values(metadata_json=orjson.dumps(merged).decode(), updated_at=now)
    )
    return rec.Session(
        session.session_id, owner, session.graph_id, session.status, merged, session.created_at, now
    )


def _bind(
    conn: sa.Connection,
    owner: str,
    session_id: str,
    graph_id: str,
    metadata: Mapping[str, Any],
    rebind: bool,
) -> str | None:
    where = (sessions.c.session_id == session_id, sessions.c.owner == owner)
    held_row = sa.select(sessions.c.graph_id, sessions.c.metadata_json).where(*where)
    row = conn.execute(held_row).mappings().first()
    if row is None:
        return None
    bound = graph_id if rebind else row["graph_id"] or graph_id
    held = orjson.loads(row["metadata_json"] or "{}")
    merged = {**held, **metadata}
    if bound != row["graph_id"] or merged != held:
        conn.execute(
            sessions.update()
            .where(*where)
            .values(graph_id=bound, metadata_json=orjson.dumps(merged).decode())
        )
    return str(bound)
