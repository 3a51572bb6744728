"""Sessions and runs in the database. Every read is scoped to an owner here, in the core."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from stepstream.server.core import records as rec
from stepstream.server.core.errors import InvalidArgument, NotFound
from stepstream.server.storage.batch import Write
from stepstream.server.storage.schema import run_events, runs, sessions

_UPDATE_SESSION_STATUS = (
    sessions.update()
    .where(sessions.c.session_id == sa.bindparam("b_session_id"))
    .values(status=sa.bindparam("status"), updated_at=sa.bindparam("updated_at"))
)
_RUN_ENDED = (
    runs.update()
    .where(runs.c.run_id == sa.bindparam("b_run_id"))
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
_RUN_STARTED = (
    runs.update()
    .where(runs.c.run_id == sa.bindparam("b_run_id"))
    .values(
        status=rec.RUNNING,
        started_at=sa.bindparam("started_at"),
        attempt=sa.bindparam("attempt"),
        replica=sa.bindparam("replica"),
    )
)
_RUN_HANDED_BACK = (
    runs.update()
    .where(runs.c.run_id == sa.bindparam("b_run_id"))
    .values(status=rec.QUEUED, replica=None, lease_expires_at=None)
)
_INSERT_SESSION = sessions.insert()
_INSERT_RUN = runs.insert()


def is_unique_violation(exc: BaseException) -> bool:
    """True for an insert refused by a unique key (the wording differs by back end)."""
    text = str(exc).upper()
    return "UNIQUE" in text or "DUPLICATE" in text


def encode_page_token(*key: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode()


def decode_page_token(token: str) -> list[Any]:
    try:
        key = orjson.loads(base64.urlsafe_b64decode(token.encode()))
    except Exception:
        raise InvalidArgument("page_token", "is not a token this server issued") from None
    if not isinstance(key, list) or len(key) != 2:
        raise InvalidArgument("page_token", "is not a token this server issued")
    return key


def page_size(requested: int) -> int:
    if requested > 1000:
        raise InvalidArgument("page_size", "must be at most 1000")
    return requested or 50


def session_from_row(row: Mapping[str, Any] | sa.RowMapping) -> rec.Session:
    return rec.Session(
        session_id=row["session_id"],
        owner=row["owner"],
        graph_id=row["graph_id"],
        status=row["status"],
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
        status=row["status"],
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
    )


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # -- writes handed to the group-commit writer -------------------------------------------
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
    def set_session_status(session_id: str, status: str, now: float) -> Write:
        return _UPDATE_SESSION_STATUS, {"b_session_id": session_id, "status": status, "updated_at": now}

    @staticmethod
    def insert_run(run: rec.Run, replica: str | None) -> Write:
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
        }

    @staticmethod
    def run_started(run_id: str, started_at: float, attempt: int, replica: str) -> Write:
        return _RUN_STARTED, {
            "b_run_id": run_id,
            "started_at": started_at,
            "attempt": attempt,
            "replica": replica,
        }

    @staticmethod
    def run_ended(run: rec.Run) -> Write:
        return _RUN_ENDED, {
            "b_run_id": run.run_id,
            "status": run.status,
            "ended_at": run.ended_at,
            "last_seq": run.last_seq,
            "values_json": run.values_json or None,
            "interrupts_json": orjson.dumps(run.interrupts).decode() if run.interrupts else None,
            "error_type": run.error_type or None,
            "error_message": run.error_message or None,
        }

    @staticmethod
    def run_handed_back(run_id: str) -> Write:
        return _RUN_HANDED_BACK, {"b_run_id": run_id}

    # -- reads ------------------------------------------------------------------------------
    async def get_session(self, owner: str, session_id: str) -> rec.Session:
        query = sa.select(sessions).where(sessions.c.session_id == session_id, sessions.c.owner == owner)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        if row is None:
            raise NotFound(f"session {session_id!r} not found")
        return session_from_row(row)

    async def list_sessions(
        self, owner: str, graph_id: str, size: int, token: str
    ) -> tuple[list[rec.Session], str]:
        query = sa.select(sessions).where(sessions.c.owner == owner)
        if graph_id:
            query = query.where(sessions.c.graph_id == graph_id)
        if token:
            created, ident = decode_page_token(token)
            query = query.where(sa.tuple_(sessions.c.created_at, sessions.c.session_id) < (created, ident))
        query = query.order_by(sessions.c.created_at.desc(), sessions.c.session_id.desc()).limit(size + 1)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        items = [session_from_row(r) for r in rows[:size]]
        more = len(rows) > size
        return items, encode_page_token(items[-1].created_at, items[-1].session_id) if more else ""

    async def get_run(self, owner: str, run_id: str) -> rec.Run:
        query = sa.select(runs).where(runs.c.run_id == run_id, runs.c.owner == owner)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        if row is None:
            raise NotFound(f"run {run_id!r} not found")
        return run_from_row(row)

    async def list_runs(
        self, owner: str, session_id: str, statuses: Sequence[str], size: int, token: str
    ) -> tuple[list[rec.Run], str]:
        query = sa.select(runs).where(runs.c.owner == owner)
        if session_id:
            query = query.where(runs.c.session_id == session_id)
        if statuses:
            query = query.where(runs.c.status.in_(statuses))
        if token:
            created, ident = decode_page_token(token)
            query = query.where(sa.tuple_(runs.c.created_at, runs.c.run_id) < (created, ident))
        query = query.order_by(runs.c.created_at.desc(), runs.c.run_id.desc()).limit(size + 1)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        items = [run_from_row(r) for r in rows[:size]]
        more = len(rows) > size
        return items, encode_page_token(items[-1].created_at, items[-1].run_id) if more else ""

    async def run_is_over(self, run_id: str) -> bool:
        query = sa.select(runs.c.status).where(runs.c.run_id == run_id)
        async with self.engine.connect() as conn:
            status = (await conn.execute(query)).scalar()
        return status is None or status in rec.ENDED

    async def active_runs(self) -> list[rec.Run]:
        """Runs left queued or running, oldest first (recovered at start-up)."""
        query = sa.select(runs).where(runs.c.status.in_(rec.ACTIVE)).order_by(runs.c.created_at)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [run_from_row(r) for r in rows]

    async def events_after(
        self, run_id: str, after_seq: int, limit: int = 1000
    ) -> list[tuple[int, str, bytes]]:
        query = (
            sa.select(run_events.c.seq, run_events.c.kind, run_events.c.body)
            .where(run_events.c.run_id == run_id, run_events.c.seq > after_seq)
            .order_by(run_events.c.seq)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [(r[0], r[1], r[2]) for r in (await conn.execute(query)).all()]

    async def delete_session_rows(self, session_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(run_events.delete().where(run_events.c.session_id == session_id))
            await conn.execute(runs.delete().where(runs.c.session_id == session_id))
            await conn.execute(sessions.delete().where(sessions.c.session_id == session_id))

    async def delete_run_rows(self, run_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(run_events.delete().where(run_events.c.run_id == run_id))
            await conn.execute(runs.delete().where(runs.c.run_id == run_id))

    async def sessions_updated_since(self, since: float) -> list[str]:
        query = sa.select(sessions.c.session_id).where(sessions.c.updated_at >= since)
        async with self.engine.connect() as conn:
            return [r[0] for r in (await conn.execute(query)).all()]

    async def expired_sessions(self, older_than: float, limit: int = 500) -> list[str]:
        query = (
            sa.select(sessions.c.session_id)
            .where(sessions.c.updated_at < older_than, sessions.c.status != rec.BUSY)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [r[0] for r in (await conn.execute(query)).all()]


def writes_for_events(session_id: str, events: Sequence[Any]) -> list[Write]:
    return [
        (
            _INSERT_EVENT,
            {
                "run_id": e.run_id,
                "seq": e.seq,
                "session_id": session_id,
                "created_at": e.time,
                "kind": e.kind,
                "body": e.body(),
            },
        )
        for e in events
    ]


_INSERT_EVENT = run_events.insert()
