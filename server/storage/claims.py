"""The run queue in the database: claims, leases, takeovers and cancel requests.

A run row is the queue entry. A replica executes a run only while its row says
`status = running, replica = <it>` with a lease in the future; it renews the
lease while it works. Any replica may claim a queued run at the head of its
session (FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite has one writer), and
requeue a running run whose lease expired (its replica died). The partial
unique index on (session_id) WHERE status = 'running' is the backstop: two
replicas can never both run one session.

Each function is one transaction's work on a blocking connection; `RunQueue`, the
core's port (core/ports.py), runs each through `GroupCommitWriter.transact` (or
the reader, for reads).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection
from typing import Any

import sqlalchemy as sa

from stepstream.server.core import records as rec
from stepstream.server.core.events import RunEvent
from stepstream.server.core.ports import (
    NOTIFY_CANCEL,
    NOTIFY_EVENTS,
    NOTIFY_QUEUE,
    ActiveRun,
    RunEndWrites,
    no_end_writes,
)
from stepstream.server.storage.batch import GroupCommitWriter
from stepstream.server.storage.reads import Reader
from stepstream.server.storage.records import NOTIFY_CHANNEL, Store, run_from_row, writes_for_events
from stepstream.server.storage.schema import run_events, runs

_NOTIFY = sa.text("SELECT pg_notify(:channel, :payload)")


def notify(conn: sa.Connection, payload: str) -> None:
    """Tell every replica listening (PostgreSQL); delivered when the transaction commits."""
    if conn.dialect.name == "postgresql":
        conn.execute(_NOTIFY, {"channel": NOTIFY_CHANNEL, "payload": payload})


def _head_of_session_candidates(graph_ids: Collection[str], limit: int, session_id: str | None) -> Any:
    """Queued runs first in their session's line, whose session runs nothing now."""
    r = runs.alias("r")
    other = runs.alias("o")
    ahead = sa.exists().where(
        other.c.session_id == r.c.session_id,
        sa.or_(
            other.c.status == rec.RunStatus.RUNNING,
            sa.and_(
                other.c.status == rec.RunStatus.QUEUED,
                sa.or_(
                    other.c.created_at < r.c.created_at,
                    sa.and_(other.c.created_at == r.c.created_at, other.c.run_id < r.c.run_id),
                ),
            ),
        ),
    )
    query = sa.select(r.c.run_id).where(
        r.c.status == rec.RunStatus.QUEUED, r.c.graph_id.in_(list(graph_ids)), ~ahead
    )
    if session_id is not None:
        query = query.where(r.c.session_id == session_id)
    return query.order_by(r.c.created_at).limit(limit).with_for_update(skip_locked=True, of=r)


def claim(
    conn: sa.Connection,
    replica: str,
    now: float,
    lease_seconds: float,
    graph_ids: Collection[str],
    limit: int,
    session_id: str | None = None,
) -> list[tuple[rec.Run, int]]:
    """Take up to `limit` claimable runs: each with the last seq of its stored events."""
    if limit <= 0 or not graph_ids:
        return []
    statement = (
        runs.update()
        .where(runs.c.run_id.in_(_head_of_session_candidates(graph_ids, limit, session_id)))
        .where(runs.c.status == rec.RunStatus.QUEUED)
        .values(
            status=rec.RunStatus.RUNNING,
            replica=replica,
            lease_expires_at=now + lease_seconds,
            attempt=runs.c.attempt + 1,
            started_at=now,
            cancel_json=None,
        )
        .returning(*runs.c)
    )
    claimed = [run_from_row(row) for row in conn.execute(statement).mappings()]
    if not claimed:
        return []
    last = sa.select(run_events.c.run_id, sa.func.max(run_events.c.seq)).where(
        run_events.c.run_id.in_([r.run_id for r in claimed])
    )
    seqs = {row[0]: row[1] for row in conn.execute(last.group_by(run_events.c.run_id))}
    return [(run, int(seqs.get(run.run_id) or 0)) for run in claimed]


def renew(conn: sa.Connection, replica: str, until: float) -> dict[str, str | None]:
    """Extend the leases of this replica's runs: {run id: a pending cancel request or None}."""
    statement = (
        runs.update()
        .where(runs.c.replica == replica, runs.c.status == rec.RunStatus.RUNNING)
        .values(lease_expires_at=until)
        .returning(runs.c.run_id, runs.c.cancel_json)
    )
    return {row[0]: row[1] for row in conn.execute(statement)}


def lost_and_orphaned(
    conn: sa.Connection, replica: str, missing: Collection[str], orphans: Collection[str]
) -> list[str]:
    """After a renewal: which `missing` runs (held here, not renewed) another replica took;
    and `orphans` (renewed under our name, executing nowhere here) go back to the queue."""
    if orphans:
        conn.execute(
            runs.update()
            .where(
                runs.c.run_id.in_(list(orphans)),
                runs.c.replica == replica,
                runs.c.status == rec.RunStatus.RUNNING,
            )
            .values(status=rec.RunStatus.QUEUED, replica=None, lease_expires_at=None)
        )
        notify(conn, NOTIFY_QUEUE)
    if not missing:
        return []
    query = sa.select(runs.c.run_id).where(
        runs.c.run_id.in_(list(missing)),
        runs.c.status.in_(rec.ACTIVE),
        sa.or_(runs.c.replica != replica, runs.c.replica.is_(None)),
    )
    # Runs missing because they ended meanwhile are not lost: they are finishing here.
    return [row[0] for row in conn.execute(query)]


def requeue_expired(conn: sa.Connection, replica: str, now: float) -> list[str]:
    """Put back in the queue the runs whose holder stopped renewing (never this replica's own)."""
    statement = (
        runs.update()
        .where(
            runs.c.status == rec.RunStatus.RUNNING,
            sa.or_(runs.c.lease_expires_at < now, runs.c.lease_expires_at.is_(None)),
            sa.or_(runs.c.replica != replica, runs.c.replica.is_(None)),
        )
        .values(status=rec.RunStatus.QUEUED, replica=None, lease_expires_at=None)
        .returning(runs.c.run_id)
    )
    requeued = [row[0] for row in conn.execute(statement)]
    if requeued:
        notify(conn, NOTIFY_QUEUE)
    return requeued


def release_replica(conn: sa.Connection, replica: str) -> int:
    """Queue again the runs held under this replica's name by an earlier process of that name."""
    statement = (
        runs.update()
        .where(runs.c.replica == replica, runs.c.status == rec.RunStatus.RUNNING)
        .values(status=rec.RunStatus.QUEUED, replica=None, lease_expires_at=None)
    )
    released = int(conn.execute(statement).rowcount)
    if released:
        notify(conn, NOTIFY_QUEUE)
    return released


def request_cancel(conn: sa.Connection, owner: str, run_id: str, request_json: str) -> bool:
    """Ask the holder of a running run to cancel it; False if it is not running now."""
    statement = (
        runs.update()
        .where(runs.c.run_id == run_id, runs.c.owner == owner, runs.c.status == rec.RunStatus.RUNNING)
        .values(cancel_json=request_json)
    )
    asked = conn.execute(statement).rowcount == 1
    if asked:
        notify(conn, NOTIFY_CANCEL + run_id)
    return asked


def cancel_queued(
    conn: sa.Connection,
    owner: str,
    run_id: str,
    now: float,
    closing: Callable[[int], list[RunEvent]],
    end_writes: RunEndWrites = no_end_writes,
) -> rec.Run | None:
    """End a run nobody executes, with the events `closing(last stored seq)` gives.

    None if the run is no longer queued; the conditional update makes this the only writer.
    """
    # Wait for the transaction of an earlier holder still inserting events (its fenced inserts
    # hold FOR KEY SHARE; PostgreSQL), so the last seq read below counts them.
    conn.execute(sa.select(runs.c.run_id).where(runs.c.run_id == run_id).with_for_update())
    statement = (
        runs.update()
        .where(runs.c.run_id == run_id, runs.c.owner == owner, runs.c.status == rec.RunStatus.QUEUED)
        .values(status=rec.RunStatus.CANCELLED, ended_at=now, replica=None, lease_expires_at=None)
        .returning(*runs.c)
    )
    row = conn.execute(statement).mappings().first()
    if row is None:
        return None
    events = closing(last_seq(conn, run_id))
    conn.execute(runs.update().where(runs.c.run_id == run_id).values(last_seq=events[-1].seq))
    run = dataclasses.replace(run_from_row(row), last_seq=events[-1].seq)
    for insert, params in writes_for_events(run.session_id, events):
        conn.execute(insert, params)
    conn.execute(*Store.session_after_run(run.session_id, run.run_id, rec.SessionStatus.IDLE, now))
    for statement, params in end_writes(run, None):
        conn.execute(statement, params)
    notify(conn, NOTIFY_EVENTS + run_id)
    return run


def last_seq(conn: sa.Connection, run_id: str) -> int:
    query = sa.select(sa.func.max(run_events.c.seq)).where(run_events.c.run_id == run_id)
    return int(conn.execute(query).scalar() or 0)


def session_active_runs(conn: sa.Connection, session_id: str) -> list[ActiveRun]:
    """(run id, status, replica) of the session's queued and running runs, oldest first."""
    query = (
        sa.select(runs.c.run_id, runs.c.status, runs.c.replica)
        .where(runs.c.session_id == session_id, runs.c.status.in_(rec.ACTIVE))
        .order_by(runs.c.created_at, runs.c.run_id)
    )
    return [(row[0], row[1], row[2]) for row in conn.execute(query)]


def queue_depth(conn: sa.Connection) -> int:
    query = sa.select(sa.func.count()).select_from(runs).where(runs.c.status == rec.RunStatus.QUEUED)
    return int(conn.execute(query).scalar() or 0)


class RunQueue:
    """The run queue as the core uses it: each call one transaction (writes on the writer)."""

    def __init__(self, writer: GroupCommitWriter, reader: Reader) -> None:
        self._writer = writer
        self._reader = reader

    async def claim(
        self,
        replica: str,
        now: float,
        lease_seconds: float,
        graph_ids: Collection[str],
        limit: int,
        session_id: str | None = None,
    ) -> list[tuple[rec.Run, int]]:
        return await self._writer.transact(
            lambda conn: claim(conn, replica, now, lease_seconds, graph_ids, limit, session_id)
        )

    async def renew(self, replica: str, until: float) -> dict[str, str | None]:
        return await self._writer.transact(lambda conn: renew(conn, replica, until))

    async def lost_and_orphaned(
        self, replica: str, missing: Collection[str], orphans: Collection[str]
    ) -> list[str]:
        return await self._writer.transact(lambda conn: lost_and_orphaned(conn, replica, missing, orphans))

    async def requeue_expired(self, replica: str, now: float) -> list[str]:
        return await self._writer.transact(lambda conn: requeue_expired(conn, replica, now))

    async def release_replica(self, replica: str) -> int:
        return await self._writer.transact(lambda conn: release_replica(conn, replica))

    async def request_cancel(self, owner: str, run_id: str, request_json: str) -> bool:
        return await self._writer.transact(lambda conn: request_cancel(conn, owner, run_id, request_json))

    async def cancel_queued(
        self,
        owner: str,
        run_id: str,
        now: float,
        closing: Callable[[int], list[RunEvent]],
        end_writes: RunEndWrites = no_end_writes,
    ) -> rec.Run | None:
        return await self._writer.transact(
            lambda conn: cancel_queued(conn, owner, run_id, now, closing, end_writes)
        )

    async def session_active_runs(self, session_id: str) -> list[ActiveRun]:
        return await self._reader.run(lambda conn: session_active_runs(conn, session_id))

    async def queue_depth(self) -> int:
        return await self._reader.run(queue_depth)
