"""Sessions, runs and their events in the database: the core's `Store` port (core/ports.py).

Every read of a caller's records is scoped to its owner here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from stepstream.server.core import records as rec
from stepstream.server.core.errors import NotFound
from stepstream.server.core.events import RunEvent
from stepstream.server.core.pages import decode_page_token, encode_page_token
from stepstream.server.storage.batch import LEADS_BATCH, Write
from stepstream.server.storage.reads import Reader
from stepstream.server.storage.schema import run_events, runs, sessions

T = TypeVar("T")

_UPDATE_SESSION_STATUS = (
    sessions.update()
    .where(sessions.c.session_id == sa.bindparam("b_session_id"))
    .values(status=sa.bindparam("status"), updated_at=sa.bindparam("updated_at"))
)
# Fenced by the holder (replica and attempt): a replica that lost its lease cannot overwrite
# its successor's work, nor can an earlier attempt of a run that came back to the same replica.
_HELD_BY = sa.and_(
    runs.c.run_id == sa.bindparam("b_run_id"),
    runs.c.replica == sa.bindparam("b_replica"),
    runs.c.attempt == sa.bindparam("b_attempt"),
)
_RUN_ENDED = (
    runs.update()
    .where(_HELD_BY)
    .values(
        status=sa.bindparam("status"),
        ended_at=sa.bindparam("ended_at"),
        last_seq=sa.bindparam("last_seq"),
        values_json=sa.bindparam("values_json"),
        interrupts_json=sa.bindparam("interrupts_json"),
        error_type=sa.bindparam("error_type"),
        error_message=sa.bindparam("error_message"),
        lease_expires_at=None,
    )
)
# A run ended: its session is busy while other runs are active on it, else takes `status`.
_SESSION_AFTER_RUN = (
    sessions.update()
    .where(sessions.c.session_id == sa.bindparam("b_session_id"))
    .values(
        status=sa.case(
            (
                sa.exists().where(
                    runs.c.session_id == sa.bindparam("b_session_id"),
                    runs.c.run_id != sa.bindparam("b_run_id"),
                    # Not IN (...): an expanding parameter cannot be sent as an executemany.
                    sa.or_(runs.c.status == rec.RunStatus.QUEUED, runs.c.status == rec.RunStatus.RUNNING),
                ),
                rec.SessionStatus.BUSY,
            ),
            else_=sa.bindparam("status"),
        ),
        updated_at=sa.bindparam("updated_at"),
    )
)
_RUN_HANDED_BACK = (
    runs.update().where(_HELD_BY).values(status=rec.RunStatus.QUEUED, replica=None, lease_expires_at=None)
)
# The channel replicas notify each other on (PostgreSQL); payloads: core/ports.py NOTIFY_*.
NOTIFY_CHANNEL = "stepstream"
_SET_TRACE_CONTEXT = (
    runs.update()
    .where(runs.c.run_id == sa.bindparam("b_run_id"))
    .values(trace_context=sa.bindparam("trace_context"))
)
_IN_FLIGHT = (
    sa.select(sa.func.count())
    .select_from(runs)
    .where(runs.c.owner == sa.bindparam("owner"), runs.c.status.in_(rec.ACTIVE))
)
_NOTIFY = sa.text("SELECT pg_notify(:channel, :payload)")
_INSERT_SESSION = sessions.insert()
_INSERT_RUN = runs.insert()
# The hot reads, built once (statement construction costs more than the query itself).
_GET_SESSION = sa.select(sessions).where(
    sessions.c.session_id == sa.bindparam("session_id"), sessions.c.owner == sa.bindparam("owner")
)
_GET_RUN = sa.select(runs).where(
    runs.c.run_id == sa.bindparam("run_id"), runs.c.owner == sa.bindparam("owner")
)
_RUN_STATUS = sa.select(runs.c.status).where(runs.c.run_id == sa.bindparam("run_id"))
_EVENTS_AFTER = (
    sa.select(run_events.c.seq, run_events.c.kind, run_events.c.body)
    .where(run_events.c.run_id == sa.bindparam("run_id"), run_events.c.seq > sa.bindparam("after_seq"))
    .order_by(run_events.c.seq)
    .limit(sa.bindparam("limit", type_=sa.Integer))
)


def is_unique_violation(exc: BaseException) -> bool:
    """True for an insert refused by a unique key or primary key, on any back end."""
    orig = getattr(exc, "orig", None)
    # PostgreSQL (asyncpg, psycopg): SQLSTATE 23505 unique_violation.
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code is not None:
        return str(code) == "23505"
    # SQLite and others: the message ("UNIQUE constraint failed", "Duplicate entry").
    text = str(exc).upper()
    return "UNIQUE" in text or "DUPLICATE" in text


def session_from_row(row: Mapping[str, Any] | sa.RowMapping) -> rec.Session:
    return rec.Session(
        session_id=row["session_id"],
        owner=row["owner"],
        graph_id=row["graph_id"],
        status=rec.SessionStatus(row["status"]),
        metadata=orjson.loads(row["metadata_json"] or "{}"),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def run_from_row(row: Mapping[str, Any] | sa.RowMapping) -> rec.Run:
    return rec.Run(
        run_id=row["run_id"],
        owner=row["owner"],
        session_id=row["session_id"],
        graph_id=row["graph_id"],
        status=rec.RunStatus(row["status"]),
        options=rec.RunOptions.from_json(orjson.loads(row["options_json"] or "{}")),
        created_at=row["created_at"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        attempt=row["attempt"],
        last_seq=row["last_seq"],
        values_json=row["values_json"] or "",
        interrupts=orjson.loads(row["interrupts_json"] or "[]"),
        error_type=row["error_type"] or "",
        error_message=row["error_message"] or "",
        input_json=row["input_json"],
        command_json=row["command_json"],
        trace_context=row["trace_context"],
        context_json=row["context_json"],
        assistant_id=row["assistant_id"] or "",
        assistant_version=row["assistant_version"] or 0,
    )


class Store:
    """Reads run whole, one hop each, through `reader` (reads.py); deletes on the async engine."""

    def __init__(self, engine: AsyncEngine, reader: Reader | None = None) -> None:
        self.engine = engine
        # PostgreSQL: writes that change what other replicas wait for carry a notification.
        self.notifies = engine.dialect.name == "postgresql"
        self.reader = reader or Reader(engine)
        self._owns_reader = reader is None

    async def aclose(self) -> None:
        """Close the reader, if this store made it."""
        if self._owns_reader:
            await self.reader.close()

    @staticmethod
    def is_unique_violation(exc: BaseException) -> bool:
        return is_unique_violation(exc)

    # -- writes handed to the group-commit writer -------------------------------------------
    def notify_writes(self, payload: str) -> list[Write]:
        """A notification to every replica, sent when the transaction commits (PostgreSQL)."""
        if not self.notifies:
            return []
        return [(_NOTIFY, {"channel": NOTIFY_CHANNEL, "payload": payload})]

    @staticmethod
    def insert_session(session: rec.Session) -> Write:
        return _INSERT_SESSION, {
            "session_id": session.session_id,
            "owner": session.owner,
            "graph_id": session.graph_id,
            "status": session.status,
            "metadata_json": orjson.dumps(session.metadata).decode(),
            "created_at": session.created_at,
            "updated_at": session.updated_at,
        }

    @staticmethod
    def set_session_status(session_id: str, status: rec.SessionStatus, now: float) -> Write:
        return _UPDATE_SESSION_STATUS, {"b_session_id": session_id, "status": status, "updated_at": now}

    @staticmethod
    def session_after_run(session_id: str, run_id: str, status: rec.SessionStatus, now: float) -> Write:
        return _SESSION_AFTER_RUN, {
            "b_session_id": session_id,
            "b_run_id": run_id,
            "status": status,
            "updated_at": now,
        }

    @staticmethod
    def insert_run(run: rec.Run, replica: str | None, lease_expires_at: float | None) -> Write:
        return _INSERT_RUN, {
            "run_id": run.run_id,
            "owner": run.owner,
            "session_id": run.session_id,
            "graph_id": run.graph_id,
            "status": run.status,
            "input_json": run.input_json,
            "command_json": run.command_json,
            "options_json": orjson.dumps(run.options.to_json()).decode(),
            "created_at": run.created_at,
            "started_at": run.started_at,
            "attempt": run.attempt,
            "replica": replica,
            "lease_expires_at": lease_expires_at,
            "trace_context": run.trace_context,
            "context_json": run.context_json,
            "assistant_id": run.assistant_id or None,
            "assistant_version": run.assistant_version or None,
        }

    @staticmethod
    def run_ended(run: rec.Run, replica: str) -> Write:
        return _RUN_ENDED, {
            "b_run_id": run.run_id,
            "b_replica": replica,
            "b_attempt": run.attempt,
            "status": run.status,
            "ended_at": run.ended_at,
            "last_seq": run.last_seq,
            "values_json": run.values_json or None,
            "interrupts_json": orjson.dumps(run.interrupts).decode() if run.interrupts else None,
            "error_type": run.error_type or None,
            "error_message": run.error_message or None,
        }

    @staticmethod
    def run_handed_back(run_id: str, replica: str, attempt: int) -> Write:
        return _RUN_HANDED_BACK, {"b_run_id": run_id, "b_replica": replica, "b_attempt": attempt}

    @staticmethod
    def trace_context_saved(run_id: str, trace_context: str) -> Write:
        return _SET_TRACE_CONTEXT, {"b_run_id": run_id, "trace_context": trace_context}

    @staticmethod
    def event_writes(
        session_id: str, events: Sequence[RunEvent], holder: tuple[str, int] | None = None
    ) -> list[Write]:
        return writes_for_events(session_id, events, holder)

    # -- reads ------------------------------------------------------------------------------
    async def get_session(self, owner: str, session_id: str) -> rec.Session:
        params = {"session_id": session_id, "owner": owner}
        session = await self.reader.run(_first(_GET_SESSION, params, session_from_row))
        if session is None:
            raise NotFound(f"session {session_id!r} not found")
        return session

    async def list_sessions(
        self, owner: str, graph_id: str, size: int, token: str
    ) -> tuple[list[rec.Session], str]:
        query = sa.select(sessions).where(sessions.c.owner == owner)
        if graph_id:
            query = query.where(sessions.c.graph_id == graph_id)
        columns = (sessions.c.created_at, sessions.c.session_id)
        return await self._page(
            query, columns, size, token, session_from_row, lambda s: (s.created_at, s.session_id)
        )

    async def get_run(self, owner: str, run_id: str) -> rec.Run:
        run = await self.reader.run(_first(_GET_RUN, {"run_id": run_id, "owner": owner}, run_from_row))
        if run is None:
            raise NotFound(f"run {run_id!r} not found")
        return run

    async def run_id_taken(self, run_id: str) -> bool:
        """Whether any owner holds `run_id` (caller-chosen ids are one namespace; SECURITY.md)."""
        return await self.reader.run(_scalar(_RUN_STATUS, {"run_id": run_id})) is not None

    async def list_runs(
        self, owner: str, session_id: str, statuses: Sequence[rec.RunStatus], size: int, token: str
    ) -> tuple[list[rec.Run], str]:
        query = sa.select(runs).where(runs.c.owner == owner)
        if session_id:
            query = query.where(runs.c.session_id == session_id)
        if statuses:
            query = query.where(runs.c.status.in_(statuses))
        columns = (runs.c.created_at, runs.c.run_id)
        return await self._page(query, columns, size, token, run_from_row, lambda r: (r.created_at, r.run_id))

    async def _page(
        self,
        query: sa.Select[Any],
        columns: tuple[sa.ColumnElement[Any], sa.ColumnElement[Any]],
        size: int,
        token: str,
        build: Callable[[Any], T],
        key: Callable[[T], tuple[float, str]],
    ) -> tuple[list[T], str]:
        """Newest first, keyset-paged on (creation time, id); the token holds the last key given."""
        created, ident = columns
        if token:
            query = query.where(sa.tuple_(created, ident) < tuple(decode_page_token(token)))
        query = query.order_by(created.desc(), ident.desc()).limit(size + 1)
        items = await self.reader.run(_all(query, build))
        if len(items) <= size:
            return items, ""
        return items[:size], encode_page_token(*key(items[size - 1]))

    async def run_is_over(self, run_id: str) -> bool:
        status = await self.reader.run(_scalar(_RUN_STATUS, {"run_id": run_id}))
        return status is None or status in rec.ENDED

    async def runs_in_flight(self, owner: str) -> int:
        return await self.reader.run(
            lambda conn: int(conn.execute(_IN_FLIGHT, {"owner": owner}).scalar() or 0)
        )

    async def events_after(
        self, run_id: str, after_seq: int, limit: int = 1000
    ) -> list[tuple[int, str, bytes]]:
        params = {"run_id": run_id, "after_seq": after_seq, "limit": limit}

        def read(conn: sa.Connection) -> list[tuple[int, str, bytes]]:
            return [(r[0], r[1], r[2]) for r in conn.execute(_EVENTS_AFTER, params)]

        return await self.reader.run(read)

    async def delete_session_rows(self, session_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(run_events.delete().where(run_events.c.session_id == session_id))
            await conn.execute(runs.delete().where(runs.c.session_id == session_id))
            await conn.execute(sessions.delete().where(sessions.c.session_id == session_id))

    async def sessions_updated_since(self, since: float) -> list[str]:
        query = sa.select(sessions.c.session_id).where(sessions.c.updated_at >= since)
        return await self.reader.run(lambda conn: [r[0] for r in conn.execute(query)])

    async def expired_sessions(self, older_than: float, limit: int = 500) -> list[str]:
        query = (
            sa.select(sessions.c.session_id)
            .where(sessions.c.updated_at < older_than, sessions.c.status != rec.SessionStatus.BUSY)
            .limit(limit)
        )
        return await self.reader.run(lambda conn: [r[0] for r in conn.execute(query)])


# Reads for the reader's threads: the records are built there too, off the event loop.
def _first(
    query: sa.Executable, params: Mapping[str, Any], build: Callable[[sa.RowMapping], T]
) -> Callable[[sa.Connection], T | None]:
    def read(conn: sa.Connection) -> T | None:
        row = conn.execute(query, params).mappings().first()
        return None if row is None else build(row)

    return read


def _all(query: sa.Executable, build: Callable[[sa.RowMapping], T]) -> Callable[[sa.Connection], list[T]]:
    return lambda conn: [build(row) for row in conn.execute(query).mappings()]


def _scalar(query: sa.Executable, params: Mapping[str, Any]) -> Callable[[sa.Connection], Any]:
    return lambda conn: conn.execute(query, params).scalar()


def writes_for_events(
    session_id: str, events: Sequence[RunEvent], holder: tuple[str, int] | None = None
) -> list[Write]:
    """Inserts of `events`; with `holder` (replica, attempt), fenced by it (`_INSERT_HELD_EVENT`)."""
    statement = _INSERT_EVENT if holder is None else _INSERT_HELD_EVENT
    fence = {} if holder is None else {"b_replica": holder[0], "b_attempt": holder[1]}
    return [
        (
            statement,
            {
                "run_id": e.run_id,
                "seq": e.seq,
                "session_id": session_id,
                "created_at": e.time,
                "kind": e.kind,
                "body": e.body(),
                **fence,
            },
        )
        for e in events
    ]


_INSERT_EVENT = run_events.insert()
_EVENT_COLUMNS = ("run_id", "seq", "session_id", "created_at", "kind", "body")
# An executing holder's event lands only while the run is still its own: same replica, same
# attempt (a claim counts attempts, so a run that came back to this replica is a new one). A
# writer that lost the run, still flushing what it queued, inserts nothing, instead of taking
# a seq the new holder read as free when it claimed the run. FOR KEY SHARE (PostgreSQL; SQLite
# has one writer) keeps the row from being claimed (FOR UPDATE SKIP LOCKED skips it) until this
# transaction ends, so the claim's read of the last seq sees these events; renewals and
# requeues (plain updates) do not conflict with it, so they neither wait nor deadlock on it.
_INSERT_HELD_EVENT = (
    run_events.insert()
    .from_select(
        list(_EVENT_COLUMNS),
        sa.select(*(sa.bindparam(name, type_=run_events.c[name].type).label(name) for name in _EVENT_COLUMNS))
        .select_from(runs)
        .where(
            runs.c.run_id == sa.bindparam("run_id", type_=runs.c.run_id.type),
            runs.c.replica == sa.bindparam("b_replica"),
            runs.c.attempt == sa.bindparam("b_attempt"),
        )
        .with_for_update(read=True, key_share=True),
        # First in its transaction (storage/batch.py): a hand-back queued before it in the same
        # group commit must not clear the replica it checks.
    )
    .execution_options(**{LEADS_BATCH: True})
)
