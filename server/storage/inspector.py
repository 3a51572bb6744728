"""The inspector's SQL: replica heartbeat rows, and the one read the live overview makes.

The overview read groups by tenant, so one query set per tick serves every subscriber of every
tenant (core/inspector/overview.py). Its range reads go through ix_runs_status_ended
(status, ended_at) and ix_runs_status_created: no scan of the whole runs table.
"""

from __future__ import annotations

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from stepstream.server.core import records as rec
from stepstream.server.core.inspector.model import FailedRun, OverviewRows, ReplicaBeat, RunCount
from stepstream.server.storage.batch import GroupCommitWriter
from stepstream.server.storage.reads import Reader
from stepstream.server.storage.schema import replicas, runs

# Seconds of the "last minute" and "last 10 s" windows.
MINUTE = 60.0
RECENT = 10.0


def _upsert(conn: sa.Connection, beat: ReplicaBeat) -> None:
    values = {
        "name": beat.name,
        "started_at": beat.started_at,
        "heartbeat_at": beat.heartbeat_at,
        "interval_s": beat.interval_s,
        "draining": beat.draining,
        "running": beat.running,
        "leases": beat.leases,
        "graphs_json": orjson.dumps(list(beat.graphs)).decode(),
    }
    insert = postgresql.insert(replicas) if conn.dialect.name == "postgresql" else sqlite.insert(replicas)
    changed = {k: v for k, v in values.items() if k != "name"}
    conn.execute(insert.values(**values).on_conflict_do_update(index_elements=["name"], set_=changed))


def beat(conn: sa.Connection, row: ReplicaBeat, forget_before: float) -> None:
    _upsert(conn, row)
    conn.execute(replicas.delete().where(replicas.c.heartbeat_at < forget_before))


def _replica(row: sa.RowMapping) -> ReplicaBeat:
    return ReplicaBeat(
        name=row["name"],
        started_at=row["started_at"],
        heartbeat_at=row["heartbeat_at"],
        interval_s=row["interval_s"],
        draining=bool(row["draining"]),
        running=row["running"],
        leases=row["leases"],
        graphs=tuple(orjson.loads(row["graphs_json"] or "[]")),
    )


def overview_rows(conn: sa.Connection, now: float, recent_failures: int) -> OverviewRows:
    replica_query = sa.select(replicas).order_by(replicas.c.name)
    replica_rows = [_replica(r) for r in conn.execute(replica_query).mappings()]
    count = sa.func.count().label("n")
    active_query = (
        sa.select(runs.c.owner, runs.c.graph_id, runs.c.status, count)
        .where(runs.c.status.in_(rec.ACTIVE))
        .group_by(runs.c.owner, runs.c.graph_id, runs.c.status)
    )
    active = [RunCount(r[0], r[1], r[2], int(r[3])) for r in conn.execute(active_query)]
    recent = sa.func.sum(sa.case((runs.c.ended_at >= now - RECENT, 1), else_=0)).label("recent")
    ended_query = (
        sa.select(runs.c.owner, runs.c.graph_id, runs.c.status, count, recent)
        .where(runs.c.status.in_(rec.ENDED), runs.c.ended_at >= now - MINUTE)
        .group_by(runs.c.owner, runs.c.graph_id, runs.c.status)
    )
    ended = [RunCount(r[0], r[1], r[2], int(r[3]), int(r[4] or 0)) for r in conn.execute(ended_query)]
    failed_query = (
        sa.select(
            runs.c.owner,
            runs.c.run_id,
            runs.c.session_id,
            runs.c.graph_id,
            runs.c.error_type,
            runs.c.error_message,
            runs.c.ended_at,
        )
        .where(runs.c.status == rec.RunStatus.FAILED)
        .order_by(runs.c.ended_at.desc())
        .limit(recent_failures)
    )
    failed = [
        FailedRun(r[0], r[1], r[2], r[3], ": ".join(p for p in (r[4], r[5]) if p), r[6] or 0.0)
        for r in conn.execute(failed_query)
    ]
    return OverviewRows(now, replica_rows, active, ended, failed)


class InspectorStore:
    """The core's InspectorStore port (core/inspector/model.py): the beat on the writer's
    connection (one small transaction), the overview read on the reader (one hop)."""

    def __init__(self, writer: GroupCommitWriter, reader: Reader) -> None:
        self._writer = writer
        self._reader = reader

    async def beat(self, beat_: ReplicaBeat, forget_before: float) -> None:
        await self._writer.transact(lambda conn: beat(conn, beat_, forget_before))

    async def overview_rows(self, now: float, recent_failures: int) -> OverviewRows:
        return await self._reader.run(lambda conn: overview_rows(conn, now, recent_failures))
