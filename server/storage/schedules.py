"""Every SQL statement of crons, fire records, webhook deliveries and signing secrets.

Claims follow the run queue's pattern (claims.py): a due cron is taken by moving
its next due time, in a transaction that also inserts its fire records, so one
replica handles each due time; on PostgreSQL the rows are selected FOR UPDATE
SKIP LOCKED (replicas skip each other's), on SQLite the one writer serialises
the claims; and either way the update is conditional on the value read. The
primary key (cron_id, due_at) of the fire records is the backstop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
import sqlalchemy as sa

from stepstream.server.core.ports import Write
from stepstream.server.core.schedules.ports import PageKey
from stepstream.server.core.schedules.records import (
    Cron,
    CronFire,
    CronSpec,
    Delivery,
    DeliveryStatus,
    FireOutcome,
    FirePlan,
    SigningSecret,
)
from stepstream.server.storage.batch import GroupCommitWriter
from stepstream.server.storage.reads import Reader
from stepstream.server.storage.records import is_unique_violation
from stepstream.server.storage.schedule_tables import cron_fires, crons, webhook_deliveries, webhook_secrets
from stepstream.server.storage.schema import runs

# Serialises delivery claims across replicas on PostgreSQL, so the per-destination bound
# counts every replica's deliveries in flight (claims are short; contention is negligible).
_DELIVERY_CLAIM_LOCK = 0x5EB600C


def cron_from_row(row: Mapping[str, Any] | sa.RowMapping) -> Cron:
    return Cron(
        cron_id=row["cron_id"],
        owner=row["owner"],
        spec=CronSpec.from_json(orjson.loads(row["spec_json"])),
        paused=bool(row["paused"]),
        next_fire_at=row["next_fire_at"],
        anchor_at=row["anchor_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def fire_from_row(row: Mapping[str, Any] | sa.RowMapping) -> CronFire:
    return CronFire(
        cron_id=row["cron_id"],
        owner=row["owner"],
        due_at=row["due_at"],
        outcome=FireOutcome(row["outcome"]),
        run_id=row["run_id"] or "",
        session_id=row["session_id"] or "",
        detail=row["detail"] or "",
        recorded_at=row["recorded_at"],
    )


def delivery_from_row(row: Mapping[str, Any] | sa.RowMapping) -> Delivery:
    return Delivery(
        delivery_id=row["delivery_id"],
        owner=row["owner"],
        run_id=row["run_id"],
        url=row["url"],
        status=DeliveryStatus(row["status"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        created_at=row["created_at"],
        body=bytes(row["body"]),
        last_status_code=row["last_status_code"] or 0,
        last_error=row["last_error"] or "",
        delivered_at=row["delivered_at"],
    )


def _cron_values(cron: Cron) -> dict[str, Any]:
    return {
        "session_id": cron.spec.session_id or None,
        "spec_json": orjson.dumps(cron.spec.to_json()).decode(),
        "paused": cron.paused,
        "next_fire_at": cron.next_fire_at,
        "anchor_at": cron.anchor_at,
        "updated_at": cron.updated_at,
    }


# A delivery stored only while the run's holder is still `b_holder`, at attempt `b_attempt`
# (see delivery_write), as the run's end itself is fenced (records.py).
_DELIVERY_COLUMNS = [c for c in webhook_deliveries.c if c.name not in ("replica", "lease_expires_at")]
_FENCED_DELIVERY = webhook_deliveries.insert().from_select(
    [c.name for c in _DELIVERY_COLUMNS],
    sa.select(*[sa.bindparam(c.name, type_=c.type) for c in _DELIVERY_COLUMNS]).where(
        runs.c.run_id == sa.bindparam("b_run_id"),
        runs.c.replica == sa.bindparam("b_holder"),
        runs.c.attempt == sa.bindparam("b_attempt"),
    ),
)
_DELIVERY = webhook_deliveries.insert()


def _keyset(query: sa.Select[Any], created: Any, ident: Any, size: int, after: PageKey | None) -> Any:
    if after is not None:
        query = query.where(sa.tuple_(created, ident) < tuple(after))
    return query.order_by(created.desc(), ident.desc()).limit(size)


class ScheduleStore:
    """ScheduleStorage (core/schedules/ports.py) on the server's writer and reader."""

    def __init__(self, writer: GroupCommitWriter, reader: Reader, dialect: str) -> None:
        self._writer = writer
        self._reader = reader
        self._postgres = dialect == "postgresql"

    def is_unique_violation(self, exc: BaseException) -> bool:
        return is_unique_violation(exc)

    # -- crons ---------------------------------------------------------------------------------
    async def insert_cron(self, cron: Cron) -> None:
        values = {"cron_id": cron.cron_id, "owner": cron.owner, "created_at": cron.created_at}
        values.update(_cron_values(cron))
        await self._writer.transact(lambda conn: conn.execute(crons.insert().values(**values)))

    async def get_cron(self, owner: str, cron_id: str) -> Cron | None:
        query = sa.select(crons).where(crons.c.cron_id == cron_id, crons.c.owner == owner)

        def read(conn: sa.Connection) -> Cron | None:
            row = conn.execute(query).mappings().first()
            return None if row is None else cron_from_row(row)

        return await self._reader.run(read)

    async def list_crons(self, owner: str, session_id: str, size: int, after: PageKey | None) -> list[Cron]:
        query = sa.select(crons).where(crons.c.owner == owner)
        if session_id:
            query = query.where(crons.c.session_id == session_id)
        query = _keyset(query, crons.c.created_at, crons.c.cron_id, size, after)
        return await self._reader.run(lambda conn: [cron_from_row(r) for r in conn.execute(query).mappings()])

    async def save_cron(self, cron: Cron) -> bool:
        statement = (
            crons.update()
            .where(crons.c.cron_id == cron.cron_id, crons.c.owner == cron.owner)
            .values(**_cron_values(cron))
        )
        return bool(await self._writer.transact(lambda conn: conn.execute(statement).rowcount))

    async def delete_cron(self, owner: str, cron_id: str) -> bool:
        def delete(conn: sa.Connection) -> bool:
            gone = conn.execute(crons.delete().where(crons.c.cron_id == cron_id, crons.c.owner == owner))
            if not gone.rowcount:
                return False
            conn.execute(cron_fires.delete().where(cron_fires.c.cron_id == cron_id))
            return True

        return await self._writer.transact(delete)

    async def claim_fires(
        self, replica: str, now: float, lease_until: float, limit: int, plan: Callable[[Cron], FirePlan]
    ) -> tuple[list[tuple[CronFire, Cron]], float | None]:
        def claim(conn: sa.Connection) -> tuple[list[tuple[CronFire, Cron]], float | None]:
            due = (
                sa.select(crons)
                .where(~crons.c.paused, crons.c.next_fire_at <= now)
                .order_by(crons.c.next_fire_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            held: list[tuple[CronFire, Cron]] = []
            for row in conn.execute(due).mappings().all():
                cron = cron_from_row(row)
                fires_plan = plan(cron)
                moved = conn.execute(
                    crons.update()
                    .where(crons.c.cron_id == cron.cron_id, crons.c.next_fire_at == cron.next_fire_at)
                    .values(next_fire_at=fires_plan.next_fire_at)
                )
                if not moved.rowcount or not fires_plan.fires:
                    continue
                rows = [
                    {
                        "cron_id": cron.cron_id,
                        "due_at": due_at,
                        "owner": cron.owner,
                        "outcome": outcome.value,
                        "session_id": cron.spec.session_id or None,
                        "replica": replica if outcome == FireOutcome.PENDING else None,
                        "lease_expires_at": lease_until if outcome == FireOutcome.PENDING else None,
                        "recorded_at": now,
                    }
                    for due_at, outcome in fires_plan.fires
                ]
                conn.execute(cron_fires.insert(), rows)
                held += [
                    (CronFire(cron.cron_id, cron.owner, due_at, outcome, recorded_at=now), cron)
                    for due_at, outcome in fires_plan.fires
                    if outcome == FireOutcome.PENDING
                ]
            # Fires whose replica died before it recorded their outcome.
            retaken = conn.execute(
                cron_fires.update()
                .where(
                    cron_fires.c.outcome == FireOutcome.PENDING.value,
                    cron_fires.c.lease_expires_at < now,
                )
                .values(replica=replica, lease_expires_at=lease_until)
                .returning(*cron_fires.c)
            ).mappings()
            fires = [fire_from_row(r) for r in retaken]
            if fires:
                ids = list({f.cron_id for f in fires})
                owned = {
                    r["cron_id"]: cron_from_row(r)
                    for r in conn.execute(sa.select(crons).where(crons.c.cron_id.in_(ids))).mappings()
                }
                held += [(f, owned[f.cron_id]) for f in fires if f.cron_id in owned]
            earliest = conn.execute(
                sa.select(sa.func.min(crons.c.next_fire_at)).where(~crons.c.paused)
            ).scalar()
            return held, earliest

        return await self._writer.transact(claim)

    async def settle_fire(
        self, fire: CronFire, replica: str, outcome: FireOutcome, run_id: str, session_id: str, detail: str
    ) -> bool:
        statement = (
            cron_fires.update()
            .where(
                cron_fires.c.cron_id == fire.cron_id,
                cron_fires.c.due_at == fire.due_at,
                cron_fires.c.outcome == FireOutcome.PENDING.value,
                cron_fires.c.replica == replica,
            )
            .values(
                outcome=outcome.value,
                run_id=run_id or None,
                session_id=session_id or None,
                detail=detail or None,
                replica=None,
                lease_expires_at=None,
                recorded_at=time.time(),
            )
        )
        return bool(await self._writer.transact(lambda conn: conn.execute(statement).rowcount))

    async def release_fire(self, fire: CronFire, replica: str) -> None:
        statement = (
            cron_fires.update()
            .where(
                cron_fires.c.cron_id == fire.cron_id,
                cron_fires.c.due_at == fire.due_at,
                cron_fires.c.outcome == FireOutcome.PENDING.value,
                cron_fires.c.replica == replica,
            )
            .values(lease_expires_at=0.0)
        )
        await self._writer.transact(lambda conn: conn.execute(statement))

    async def list_fires(self, owner: str, cron_id: str, size: int, after: PageKey | None) -> list[CronFire]:
        query = sa.select(cron_fires).where(cron_fires.c.owner == owner, cron_fires.c.cron_id == cron_id)
        query = _keyset(query, cron_fires.c.due_at, cron_fires.c.cron_id, size, after)
        return await self._reader.run(lambda conn: [fire_from_row(r) for r in conn.execute(query).mappings()])

    # -- webhook deliveries --------------------------------------------------------------------
    def delivery_write(
        self, delivery: Delivery, destination: str, holder: str | None, attempt: int = 0
    ) -> Write:
        params: dict[str, Any] = {
            "delivery_id": delivery.delivery_id,
            "owner": delivery.owner,
            "run_id": delivery.run_id,
            "url": delivery.url,
            "destination": destination,
            "body": delivery.body,
            "status": delivery.status.value,
            "attempts": 0,
            "next_attempt_at": delivery.next_attempt_at,
            "last_status_code": None,
            "last_error": None,
            "created_at": delivery.created_at,
            "delivered_at": None,
        }
        if holder is None:
            return _DELIVERY, params
        fence = {"b_run_id": delivery.run_id, "b_holder": holder, "b_attempt": attempt}
        return _FENCED_DELIVERY, {**params, **fence}

    async def claim_deliveries(
        self, replica: str, now: float, lease_until: float, limit: int, per_destination: int
    ) -> list[Delivery]:
        d = webhook_deliveries
        claimable = sa.and_(
            d.c.status == DeliveryStatus.PENDING.value,
            d.c.next_attempt_at <= now,
            sa.or_(d.c.lease_expires_at.is_(None), d.c.lease_expires_at < now),
        )

        def claim(conn: sa.Connection) -> list[Delivery]:
            # Never wait for another replica's claim: skip this round instead.
            if (
                self._postgres
                and not conn.execute(
                    sa.select(sa.func.pg_try_advisory_xact_lock(_DELIVERY_CLAIM_LOCK))
                ).scalar()
            ):
                return []
            in_flight: dict[str, int] = dict(
                conn.execute(
                    sa.select(d.c.destination, sa.func.count())
                    .where(d.c.status == DeliveryStatus.PENDING.value, d.c.lease_expires_at >= now)
                    .group_by(d.c.destination)
                ).all()
            )
            candidates = conn.execute(
                sa.select(d.c.delivery_id, d.c.destination)
                .where(claimable)
                .order_by(d.c.next_attempt_at)
                .limit(limit * 4)
            ).all()
            picked: list[str] = []
            for delivery_id, destination in candidates:
                if len(picked) >= limit or in_flight.get(destination, 0) >= per_destination:
                    continue
                in_flight[destination] = in_flight.get(destination, 0) + 1
                picked.append(delivery_id)
            if not picked:
                return []
            rows = conn.execute(
                d.update()
                .where(d.c.delivery_id.in_(picked), claimable)
                .values(replica=replica, lease_expires_at=lease_until, attempts=d.c.attempts + 1)
                .returning(*d.c)
            ).mappings()
            return [delivery_from_row(r) for r in rows]

        return await self._writer.transact(claim)

    async def delivery_attempted(
        self,
        delivery: Delivery,
        replica: str,
        status: DeliveryStatus,
        next_attempt_at: float,
        status_code: int,
        error: str,
        now: float,
    ) -> bool:
        d = webhook_deliveries
        statement = (
            d.update()
            .where(
                d.c.delivery_id == delivery.delivery_id,
                d.c.replica == replica,
                d.c.attempts == delivery.attempts,
                d.c.status == DeliveryStatus.PENDING.value,
            )
            .values(
                status=status.value,
                next_attempt_at=next_attempt_at,
                replica=None,
                lease_expires_at=None,
                last_status_code=status_code or None,
                last_error=error or None,
                delivered_at=now if status == DeliveryStatus.DELIVERED else None,
            )
        )
        return bool(await self._writer.transact(lambda conn: conn.execute(statement).rowcount))

    async def list_deliveries(
        self,
        owner: str,
        run_id: str,
        statuses: Sequence[DeliveryStatus],
        size: int,
        after: PageKey | None,
    ) -> list[Delivery]:
        d = webhook_deliveries
        query = sa.select(d).where(d.c.owner == owner)
        if run_id:
            query = query.where(d.c.run_id == run_id)
        if statuses:
            query = query.where(d.c.status.in_([s.value for s in statuses]))
        query = _keyset(query, d.c.created_at, d.c.delivery_id, size, after)
        return await self._reader.run(
            lambda conn: [delivery_from_row(r) for r in conn.execute(query).mappings()]
        )

    # -- signing secrets -----------------------------------------------------------------------
    async def signing_secrets(self, owner: str, now: float) -> list[SigningSecret]:
        return await self._reader.run(lambda conn: secrets_in_force(conn, owner, now))


def secrets_in_force(conn: sa.Connection, owner: str, now: float) -> list[SigningSecret]:
    s = webhook_secrets
    query = (
        sa.select(s)
        .where(s.c.owner == owner, sa.or_(s.c.expires_at.is_(None), s.c.expires_at > now))
        .order_by(s.c.created_at.desc())
    )
    return [
        SigningSecret(r["owner"], r["secret"], r["created_at"], r["expires_at"])
        for r in conn.execute(query).mappings()
    ]


def add_secret(
    conn: sa.Connection, owner: str, secret: str, now: float, retire_current_at: float | None
) -> bool:
    """Store `secret` as the tenant's current one. With `retire_current_at`, the current one
    (if any) keeps signing until then (rotation); without, refuse (False) if there is one."""
    s = webhook_secrets
    current = s.c.owner == owner, s.c.expires_at.is_(None)
    if retire_current_at is None:
        if conn.execute(sa.select(sa.func.count()).select_from(s).where(*current)).scalar():
            return False
    else:
        conn.execute(s.update().where(*current).values(expires_at=retire_current_at))
    conn.execute(s.insert().values(owner=owner, created_at=now, secret=secret, expires_at=None))
    return True
