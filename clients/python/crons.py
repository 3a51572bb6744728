"""CronService and WebhookService: runs started on a schedule, and what became of run webhooks.

A cron fires exactly once per due time across the server's replicas; each fire is
an ordinary run, and leaves a fire record (ran, rejected as busy, skipped, failed).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import AsyncGenerator, Mapping, Sequence
from datetime import datetime

from google.protobuf import timestamp_pb2

from stepstream.client.jsonio import Json, decode, encode_optional
from stepstream.client.models import Page, iter_items, timestamp
from stepstream.client.options import RunOptions
from stepstream.client.pool import ChannelPool
from stepstream.v1 import crons_pb2


class MisfirePolicy(enum.StrEnum):
    """What a due time missed by every replica (all down past the grace) becomes."""

    SKIP = "skip"
    FIRE_ONCE = "fire_once"


_MISFIRE = {
    MisfirePolicy.SKIP: crons_pb2.MISFIRE_POLICY_SKIP,
    MisfirePolicy.FIRE_ONCE: crons_pb2.MISFIRE_POLICY_FIRE_ONCE,
}
_OUTCOME = {
    crons_pb2.CRON_FIRE_OUTCOME_PENDING: "pending",
    crons_pb2.CRON_FIRE_OUTCOME_RAN: "ran",
    crons_pb2.CRON_FIRE_OUTCOME_REJECTED: "rejected",
    crons_pb2.CRON_FIRE_OUTCOME_SKIPPED: "skipped",
    crons_pb2.CRON_FIRE_OUTCOME_FAILED: "failed",
}
_DELIVERY = {
    crons_pb2.WEBHOOK_DELIVERY_STATUS_PENDING: "pending",
    crons_pb2.WEBHOOK_DELIVERY_STATUS_DELIVERED: "delivered",
    crons_pb2.WEBHOOK_DELIVERY_STATUS_DEAD: "dead",
}
_DELIVERY_PB = {name: pb for pb, name in _DELIVERY.items()}


def _ts(value: datetime | float | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    message = timestamp_pb2.Timestamp()
    seconds = value.timestamp() if isinstance(value, datetime) else value
    message.FromNanoseconds(int(seconds * 1e9))
    return message


@dataclasses.dataclass(frozen=True)
class Cron:
    cron_id: str
    # A cron expression (5 fields, or 6 with leading seconds) or an interval in seconds.
    schedule: str | float
    timezone: str
    graph_id: str
    assistant_id: str
    # "" : a new session for each fire.
    session_id: str
    input: Json
    context: Json
    options: RunOptions
    webhook: str
    misfire_policy: MisfirePolicy
    paused: bool
    created_at: datetime | None
    updated_at: datetime | None
    # The next due times (none while paused).
    next_fire_times: tuple[datetime, ...]

    @classmethod
    def from_proto(cls, msg: crons_pb2.Cron) -> Cron:
        spec = msg.spec
        schedule: str | float = spec.cron if spec.WhichOneof("schedule") == "cron" else spec.interval_seconds
        return cls(
            cron_id=msg.cron_id,
            schedule=schedule,
            timezone=spec.timezone,
            graph_id=spec.graph_id,
            assistant_id=spec.assistant_id,
            session_id=spec.session_id,
            input=decode(spec.input_json),
            context=decode(spec.context_json),
            options=RunOptions.from_proto(spec.options),
            webhook=spec.webhook,
            misfire_policy=(
                MisfirePolicy.FIRE_ONCE
                if spec.misfire_policy == crons_pb2.MISFIRE_POLICY_FIRE_ONCE
                else MisfirePolicy.SKIP
            ),
            paused=msg.paused,
            created_at=timestamp(msg.created_at, msg.HasField("created_at")),
            updated_at=timestamp(msg.updated_at, msg.HasField("updated_at")),
            next_fire_times=tuple(timestamp(t, True) or datetime.min for t in msg.next_fire_times),
        )


@dataclasses.dataclass(frozen=True)
class CronFire:
    """What became of one due time: "ran" (run_id), "rejected", "skipped", "failed", "pending"."""

    cron_id: str
    due_at: datetime | None
    outcome: str
    run_id: str
    session_id: str
    detail: str

    @classmethod
    def from_proto(cls, msg: crons_pb2.CronFire) -> CronFire:
        return cls(
            cron_id=msg.cron_id,
            due_at=timestamp(msg.due_at, msg.HasField("due_at")),
            outcome=_OUTCOME.get(msg.outcome, "unspecified"),
            run_id=msg.run_id,
            session_id=msg.session_id,
            detail=msg.detail,
        )


@dataclasses.dataclass(frozen=True)
class WebhookDelivery:
    """A run's webhook: "pending", "delivered", or "dead" (a dead letter after the last attempt)."""

    delivery_id: str
    run_id: str
    url: str
    status: str
    attempts: int
    last_status_code: int
    last_error: str

    @classmethod
    def from_proto(cls, msg: crons_pb2.WebhookDelivery) -> WebhookDelivery:
        return cls(
            delivery_id=msg.delivery_id,
            run_id=msg.run_id,
            url=msg.url,
            status=_DELIVERY.get(msg.status, "unspecified"),
            attempts=msg.attempts,
            last_status_code=msg.last_status_code,
            last_error=msg.last_error,
        )


def cron_spec(
    schedule: str | float,
    *,
    graph_id: str | None = None,
    assistant_id: str | None = None,
    session_id: str | None = None,
    input: Json = None,
    context: Mapping[str, Json] | None = None,
    options: RunOptions | None = None,
    timezone: str | None = None,
    webhook: str | None = None,
    misfire_policy: MisfirePolicy | str = MisfirePolicy.SKIP,
    misfire_grace_seconds: float = 0.0,
    end_at: datetime | float | None = None,
) -> crons_pb2.CronSpec:
    """A schedule given as a cron expression (str) or an interval in seconds (number)."""
    spec = crons_pb2.CronSpec(
        timezone=timezone or "",
        graph_id=graph_id or "",
        assistant_id=assistant_id or "",
        session_id=session_id or "",
        input_json=encode_optional(input),
        context_json=encode_optional(context),
        options=options.to_proto() if options else None,
        webhook=webhook or "",
        misfire_policy=_MISFIRE[MisfirePolicy(misfire_policy)],
        misfire_grace_seconds=misfire_grace_seconds,
        end_at=_ts(end_at),
    )
    if isinstance(schedule, str):
        spec.cron = schedule
    else:
        spec.interval_seconds = float(schedule)
    return spec


class Crons:
    def __init__(self, pool: ChannelPool) -> None:
        self._pool = pool

    async def _cron(self, method: str, request: object, idempotent: bool) -> Cron:
        response = await self._pool.unary("crons", method, request, idempotent=idempotent)
        return Cron.from_proto(response.cron)

    async def create(
        self,
        schedule: str | float,
        *,
        cron_id: str | None = None,
        paused: bool = False,
        graph_id: str | None = None,
        assistant_id: str | None = None,
        session_id: str | None = None,
        input: Json = None,
        context: Mapping[str, Json] | None = None,
        options: RunOptions | None = None,
        timezone: str | None = None,
        webhook: str | None = None,
        misfire_policy: MisfirePolicy | str = MisfirePolicy.SKIP,
        misfire_grace_seconds: float = 0.0,
        end_at: datetime | float | None = None,
    ) -> Cron:
        """Create a cron: `schedule` is a cron expression ("*/10 * * * * *": every 10 s; read in
        `timezone`, UTC by default) or an interval in seconds. Each fire runs `graph_id` or
        `assistant_id` on `session_id` (None: a new session each time) with `input`,
        `context` and `options` (its busy policy decides a fire on a busy session);
        `webhook` is POSTed each run when it ends. No fire after `end_at`."""
        request = crons_pb2.CreateCronRequest(
            spec=cron_spec(
                schedule,
                graph_id=graph_id,
                assistant_id=assistant_id,
                session_id=session_id,
                input=input,
                context=context,
                options=options,
                timezone=timezone,
                webhook=webhook,
                misfire_policy=misfire_policy,
                misfire_grace_seconds=misfire_grace_seconds,
                end_at=end_at,
            ),
            cron_id=cron_id or "",
            paused=paused,
        )
        return await self._cron("CreateCron", request, idempotent=bool(cron_id))

    async def get(self, cron_id: str) -> Cron:
        return await self._cron("GetCron", crons_pb2.GetCronRequest(cron_id=cron_id), True)

    async def update(
        self,
        cron_id: str,
        schedule: str | float,
        *,
        graph_id: str | None = None,
        assistant_id: str | None = None,
        session_id: str | None = None,
        input: Json = None,
        context: Mapping[str, Json] | None = None,
        options: RunOptions | None = None,
        timezone: str | None = None,
        webhook: str | None = None,
        misfire_policy: MisfirePolicy | str = MisfirePolicy.SKIP,
        misfire_grace_seconds: float = 0.0,
        end_at: datetime | float | None = None,
    ) -> Cron:
        """Replace the cron's spec (as `create` takes it); its schedule restarts from now."""
        request = crons_pb2.UpdateCronRequest(
            cron_id=cron_id,
            spec=cron_spec(
                schedule,
                graph_id=graph_id,
                assistant_id=assistant_id,
                session_id=session_id,
                input=input,
                context=context,
                options=options,
                timezone=timezone,
                webhook=webhook,
                misfire_policy=misfire_policy,
                misfire_grace_seconds=misfire_grace_seconds,
                end_at=end_at,
            ),
        )
        return await self._cron("UpdateCron", request, False)

    async def pause(self, cron_id: str) -> Cron:
        return await self._cron("PauseCron", crons_pb2.PauseCronRequest(cron_id=cron_id), True)

    async def resume(self, cron_id: str) -> Cron:
        return await self._cron("ResumeCron", crons_pb2.ResumeCronRequest(cron_id=cron_id), True)

    async def delete(self, cron_id: str) -> None:
        request = crons_pb2.DeleteCronRequest(cron_id=cron_id)
        await self._pool.unary("crons", "DeleteCron", request, idempotent=False)

    async def list_page(
        self, *, session_id: str | None = None, page_size: int = 0, page_token: str = ""
    ) -> Page[Cron]:
        request = crons_pb2.ListCronsRequest(
            session_id=session_id or "", page_size=page_size, page_token=page_token
        )
        response: crons_pb2.ListCronsResponse = await self._pool.unary(
            "crons", "ListCrons", request, idempotent=True
        )
        return Page(tuple(Cron.from_proto(c) for c in response.crons), response.next_page_token)

    def list(
        self, *, session_id: str | None = None, page_size: int = 0, limit: int | None = None
    ) -> AsyncGenerator[Cron, None]:
        """Every cron (of a session, when given), newest first, fetching pages as needed."""
        return iter_items(
            lambda token: self.list_page(session_id=session_id, page_size=page_size, page_token=token), limit
        )

    async def fires_page(self, cron_id: str, *, page_size: int = 0, page_token: str = "") -> Page[CronFire]:
        request = crons_pb2.ListCronFiresRequest(cron_id=cron_id, page_size=page_size, page_token=page_token)
        response: crons_pb2.ListCronFiresResponse = await self._pool.unary(
            "crons", "ListCronFires", request, idempotent=True
        )
        return Page(tuple(CronFire.from_proto(f) for f in response.fires), response.next_page_token)

    def fires(
        self, cron_id: str, *, page_size: int = 0, limit: int | None = None
    ) -> AsyncGenerator[CronFire, None]:
        """What became of each due time, newest first."""
        return iter_items(
            lambda token: self.fires_page(cron_id, page_size=page_size, page_token=token), limit
        )

    async def webhook_deliveries_page(
        self,
        *,
        run_id: str | None = None,
        statuses: Sequence[str] = (),
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[WebhookDelivery]:
        """Webhook deliveries, newest first: of a run, with the statuses given ("dead": the
        dead letters), each when given."""
        request = crons_pb2.ListWebhookDeliveriesRequest(
            run_id=run_id or "",
            statuses=[_DELIVERY_PB[s] for s in statuses],
            page_size=page_size,
            page_token=page_token,
        )
        response: crons_pb2.ListWebhookDeliveriesResponse = await self._pool.unary(
            "webhooks", "ListWebhookDeliveries", request, idempotent=True
        )
        return Page(
            tuple(WebhookDelivery.from_proto(d) for d in response.deliveries), response.next_page_token
        )
