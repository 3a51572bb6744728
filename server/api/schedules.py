"""Thin gRPC servicers for crons and webhook deliveries: proto ⇄ core (core/schedules)."""

from __future__ import annotations

from typing import Any

import grpc

from stepstream.server.api import convert
from stepstream.server.api.servicers import Context, _Servicer, owner_of
from stepstream.server.api.status import unary
from stepstream.server.core.app import Core
from stepstream.server.core.errors import InvalidArgument
from stepstream.server.core.pages import decode_page_token, encode_page_token, page_size
from stepstream.server.core.schedules.records import (
    Cron,
    CronFire,
    CronSpec,
    Delivery,
    DeliveryStatus,
    FireOutcome,
    MisfirePolicy,
)
from stepstream.server.core.start import parse_options
from stepstream.v1 import crons_pb2, crons_pb2_grpc

SCHEDULE_SERVICE_NAMES = (
    crons_pb2.DESCRIPTOR.services_by_name["CronService"].full_name,
    crons_pb2.DESCRIPTOR.services_by_name["WebhookService"].full_name,
)

MISFIRE = {
    crons_pb2.MISFIRE_POLICY_UNSPECIFIED: MisfirePolicy.SKIP,
    crons_pb2.MISFIRE_POLICY_SKIP: MisfirePolicy.SKIP,
    crons_pb2.MISFIRE_POLICY_FIRE_ONCE: MisfirePolicy.FIRE_ONCE,
}
MISFIRE_PB = {
    MisfirePolicy.SKIP: crons_pb2.MISFIRE_POLICY_SKIP,
    MisfirePolicy.FIRE_ONCE: crons_pb2.MISFIRE_POLICY_FIRE_ONCE,
}
OUTCOME_PB = {
    FireOutcome.PENDING: crons_pb2.CRON_FIRE_OUTCOME_PENDING,
    FireOutcome.RAN: crons_pb2.CRON_FIRE_OUTCOME_RAN,
    FireOutcome.REJECTED: crons_pb2.CRON_FIRE_OUTCOME_REJECTED,
    FireOutcome.SKIPPED: crons_pb2.CRON_FIRE_OUTCOME_SKIPPED,
    FireOutcome.FAILED: crons_pb2.CRON_FIRE_OUTCOME_FAILED,
}
DELIVERY_STATUS = {
    crons_pb2.WEBHOOK_DELIVERY_STATUS_PENDING: DeliveryStatus.PENDING,
    crons_pb2.WEBHOOK_DELIVERY_STATUS_DELIVERED: DeliveryStatus.DELIVERED,
    crons_pb2.WEBHOOK_DELIVERY_STATUS_DEAD: DeliveryStatus.DEAD,
}
DELIVERY_STATUS_PB = {v: k for k, v in DELIVERY_STATUS.items()}


def cron_spec(spec: crons_pb2.CronSpec) -> CronSpec:
    if spec.misfire_policy not in MISFIRE:
        raise InvalidArgument("spec.misfire_policy", f"unknown policy {spec.misfire_policy}")
    grace = spec.misfire_grace_seconds or CronSpec.misfire_grace_seconds
    return CronSpec(
        cron=spec.cron,
        interval_seconds=spec.interval_seconds,
        timezone=spec.timezone,
        graph_id=spec.graph_id,
        assistant_id=spec.assistant_id,
        session_id=spec.session_id,
        input_json=spec.input_json,
        context_json=spec.context_json,
        options=parse_options(convert.options_request(spec.options, "spec.options"), "spec.options"),
        webhook=spec.webhook,
        misfire_policy=MISFIRE[spec.misfire_policy],
        misfire_grace_seconds=grace,
        end_at=spec.end_at.ToNanoseconds() / 1e9 if spec.HasField("end_at") else None,
    )


def cron_spec_pb(spec: CronSpec) -> crons_pb2.CronSpec:
    message = crons_pb2.CronSpec(
        timezone=spec.timezone,
        graph_id=spec.graph_id,
        assistant_id=spec.assistant_id,
        session_id=spec.session_id,
        input_json=spec.input_json,
        context_json=spec.context_json,
        options=convert.options_pb(spec.options),
        webhook=spec.webhook,
        misfire_policy=MISFIRE_PB[spec.misfire_policy],
        misfire_grace_seconds=spec.misfire_grace_seconds,
        end_at=convert.timestamp(spec.end_at),
    )
    if spec.cron:
        message.cron = spec.cron
    else:
        message.interval_seconds = spec.interval_seconds
    return message


def cron_pb(cron: Cron) -> crons_pb2.Cron:
    return crons_pb2.Cron(
        cron_id=cron.cron_id,
        spec=cron_spec_pb(cron.spec),
        paused=cron.paused,
        created_at=convert.timestamp(cron.created_at),
        updated_at=convert.timestamp(cron.updated_at),
        next_fire_times=[ts for t in cron.next_fire_times if (ts := convert.timestamp(t)) is not None],
    )


def fire_pb(fire: CronFire) -> crons_pb2.CronFire:
    return crons_pb2.CronFire(
        cron_id=fire.cron_id,
        due_at=convert.timestamp(fire.due_at),
        outcome=OUTCOME_PB[fire.outcome],
        run_id=fire.run_id,
        session_id=fire.session_id,
        detail=fire.detail,
        recorded_at=convert.timestamp(fire.recorded_at),
    )


def delivery_pb(delivery: Delivery) -> crons_pb2.WebhookDelivery:
    return crons_pb2.WebhookDelivery(
        delivery_id=delivery.delivery_id,
        run_id=delivery.run_id,
        url=delivery.url,
        status=DELIVERY_STATUS_PB[delivery.status],
        attempts=delivery.attempts,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        created_at=convert.timestamp(delivery.created_at),
        next_attempt_at=convert.timestamp(
            delivery.next_attempt_at if delivery.status == DeliveryStatus.PENDING else None
        ),
        delivered_at=convert.timestamp(delivery.delivered_at),
    )


def _after(token: str) -> tuple[float, str] | None:
    if not token:
        return None
    key = decode_page_token(token)
    return float(key[0]), str(key[1])


def _next_token(items: list[Any], size: int, key: Any) -> str:
    return encode_page_token(*key(items[size - 1])) if len(items) > size else ""


class CronServicer(_Servicer, crons_pb2_grpc.CronServiceServicer):
    def __init__(self, core: Core) -> None:
        super().__init__(core)
        self._crons = core.crons

    @unary
    async def CreateCron(self, request: crons_pb2.CreateCronRequest, context: Context) -> Any:
        cron = await self._crons.create(
            owner_of(self._core, context), cron_spec(request.spec), request.cron_id, request.paused
        )
        return crons_pb2.CreateCronResponse(cron=cron_pb(cron))

    @unary
    async def GetCron(self, request: crons_pb2.GetCronRequest, context: Context) -> Any:
        cron = await self._crons.get(owner_of(self._core, context), request.cron_id)
        return crons_pb2.GetCronResponse(cron=cron_pb(cron))

    @unary
    async def ListCrons(self, request: crons_pb2.ListCronsRequest, context: Context) -> Any:
        size = page_size(request.page_size)
        items = await self._crons.list_crons(
            owner_of(self._core, context), request.session_id, size + 1, _after(request.page_token)
        )
        token = _next_token(items, size, lambda c: (c.created_at, c.cron_id))
        return crons_pb2.ListCronsResponse(crons=[cron_pb(c) for c in items[:size]], next_page_token=token)

    @unary
    async def UpdateCron(self, request: crons_pb2.UpdateCronRequest, context: Context) -> Any:
        cron = await self._crons.update(
            owner_of(self._core, context), request.cron_id, cron_spec(request.spec)
        )
        return crons_pb2.UpdateCronResponse(cron=cron_pb(cron))

    @unary
    async def PauseCron(self, request: crons_pb2.PauseCronRequest, context: Context) -> Any:
        cron = await self._crons.pause(owner_of(self._core, context), request.cron_id)
        return crons_pb2.PauseCronResponse(cron=cron_pb(cron))

    @unary
    async def ResumeCron(self, request: crons_pb2.ResumeCronRequest, context: Context) -> Any:
        cron = await self._crons.resume(owner_of(self._core, context), request.cron_id)
        return crons_pb2.ResumeCronResponse(cron=cron_pb(cron))

    @unary
    async def DeleteCron(self, request: crons_pb2.DeleteCronRequest, context: Context) -> Any:
        await self._crons.delete(owner_of(self._core, context), request.cron_id)
        return crons_pb2.DeleteCronResponse()

    @unary
    async def ListCronFires(self, request: crons_pb2.ListCronFiresRequest, context: Context) -> Any:
        size = page_size(request.page_size)
        items = await self._crons.fires(
            owner_of(self._core, context), request.cron_id, size + 1, _after(request.page_token)
        )
        token = _next_token(items, size, lambda f: (f.due_at, f.cron_id))
        return crons_pb2.ListCronFiresResponse(
            fires=[fire_pb(f) for f in items[:size]], next_page_token=token
        )


class WebhookServicer(_Servicer, crons_pb2_grpc.WebhookServiceServicer):
    @unary
    async def ListWebhookDeliveries(
        self, request: crons_pb2.ListWebhookDeliveriesRequest, context: Context
    ) -> Any:
        unknown = [s for s in request.statuses if s not in DELIVERY_STATUS]
        if unknown:
            raise InvalidArgument("statuses", f"unknown delivery status {unknown[0]}")
        size = page_size(request.page_size)
        items = await self._core.webhooks.list(
            owner_of(self._core, context),
            request.run_id,
            [DELIVERY_STATUS[s] for s in request.statuses],
            size + 1,
            _after(request.page_token),
        )
        token = _next_token(items, size, lambda d: (d.created_at, d.delivery_id))
        return crons_pb2.ListWebhookDeliveriesResponse(
            deliveries=[delivery_pb(d) for d in items[:size]], next_page_token=token
        )


def add_schedule_servicers(core: Core, server: grpc.aio.Server) -> None:
    crons_pb2_grpc.add_CronServiceServicer_to_server(CronServicer(core), server)
    crons_pb2_grpc.add_WebhookServiceServicer_to_server(WebhookServicer(core), server)
