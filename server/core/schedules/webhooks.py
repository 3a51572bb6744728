"""Webhook deliveries: stored with the run's end, sent by whichever replica claims them.

When a run that names a webhook ends, the delivery (its id, URL and the body: the
run and its final values) is written in the same transaction as the run's end, so
it exists exactly when the end does. Each replica then claims due deliveries with
a lease (at most `max_per_destination` in flight per destination, across every
replica), POSTs them signed, and records the outcome; a failed attempt is retried
after an exponential backoff with jitter, and after the last one the delivery is
dead (a dead letter, listed by the API). A replica killed mid-attempt leaves its
lease to lapse and another sends the delivery again with the same id: at least
once, and the receiver deduplicates on webhook-id.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import random
import time
from collections.abc import Sequence
from typing import Any

import orjson

from stepstream.server.core import records as rec
from stepstream.server.core.errors import FailedPrecondition
from stepstream.server.core.ids import new_id
from stepstream.server.core.ports import Write
from stepstream.server.core.schedules import signing
from stepstream.server.core.schedules.destinations import DestinationPolicy
from stepstream.server.core.schedules.ports import PageKey, ScheduleStorage
from stepstream.server.core.schedules.records import Delivery, DeliveryStatus
from stepstream.server.core.schedules.sender import Attempt, WebhookSender
from stepstream.server.settings import ServerSettings

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class WebhookSettings:
    timeout_seconds: float = 10.0
    max_attempts: int = 8
    backoff_seconds: float = 1.0
    backoff_max_seconds: float = 600.0
    max_per_destination: int = 4
    poll_seconds: float = 0.5
    # Deliveries one replica sends at once.
    max_in_flight: int = 64


def webhook_settings(settings: ServerSettings) -> WebhookSettings:
    return WebhookSettings(
        settings.webhook_timeout_seconds,
        settings.webhook_max_attempts,
        settings.webhook_backoff_seconds,
        settings.webhook_backoff_max_seconds,
        settings.webhook_max_per_destination,
        settings.webhook_poll_seconds,
    )


def backoff(settings: WebhookSettings, attempts: int, rng: random.Random) -> float:
    """Seconds before the next attempt after `attempts` failed ones: doubling, capped, with
    half of it random so receivers coming back are not hit by every delivery at once."""
    delay = min(settings.backoff_max_seconds, settings.backoff_seconds * 2 ** max(0, attempts - 1))
    return float(delay / 2 + rng.uniform(0, delay / 2))


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat()


def body_of(run: rec.Run, sent_at: float) -> bytes:
    """The POSTed JSON: {"type": "run.<status>", "timestamp", "data": the run and its values}."""
    data: dict[str, Any] = {
        "run_id": run.run_id,
        "session_id": run.session_id,
        "graph_id": run.graph_id,
        "status": run.status,
        "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at),
        "ended_at": _iso(run.ended_at),
        "attempt": run.attempt,
        "metadata": run.options.metadata,
        "values": orjson.loads(run.values_json) if run.values_json else None,
        "interrupts": run.interrupts,
        "error": {"type": run.error_type, "message": run.error_message} if run.error_type else None,
    }
    return orjson.dumps({"type": f"run.{run.status}", "timestamp": _iso(sent_at), "data": data})


class WebhookManager:
    def __init__(
        self,
        settings: WebhookSettings,
        storage: ScheduleStorage,
        replica: str,
        policy: DestinationPolicy,
    ) -> None:
        self._settings = settings
        self._storage = storage
        self._replica = replica
        self.policy = policy
        self._sender: WebhookSender | None = None
        self._rng = random.Random()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()

    @property
    def lease_seconds(self) -> float:
        # Longer than any attempt can last, so a live sender never loses its delivery.
        return self._settings.timeout_seconds * 2 + 5.0

    async def check(self, owner: str, url: str, field: str = "webhook") -> None:
        """Refuse, before anything is stored, a webhook that could not be sent."""
        await self.policy.check(url, field)
        if not await self._storage.signing_secrets(owner, time.time()):
            raise FailedPrecondition(
                f"tenant {owner!r} has no webhook signing secret; an operator issues one with "
                f"`stepstream webhooks secret issue --tenant {owner}`"
            )

    def end_writes(self, run: rec.Run, holder: str | None) -> list[Write]:
        """The delivery of an ended run's webhook, for the transaction that stores the end."""
        if not run.options.webhook:
            return []
        try:
            target = self.policy.target(run.options.webhook)
        except Exception:
            destination = run.options.webhook[:500]
        else:
            destination = target.destination
        now = time.time()
        delivery = Delivery(
            delivery_id="msg_" + new_id().replace("-", ""),
            owner=run.owner,
            run_id=run.run_id,
            url=run.options.webhook,
            status=DeliveryStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            body=body_of(run, now),
        )
        self._wake.set()
        return [self._storage.delivery_write(delivery, destination, holder, run.attempt)]

    async def list(
        self, owner: str, run_id: str, statuses: Sequence[DeliveryStatus], size: int, after: PageKey | None
    ) -> list[Delivery]:
        return await self._storage.list_deliveries(owner, run_id, statuses, size, after)

    # -- sending -------------------------------------------------------------------------------
    def start(self) -> None:
        self._sender = WebhookSender(self.policy, self._settings.timeout_seconds)
        self._task = asyncio.create_task(self._loop(), name="webhook-deliveries")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # Attempts under way are dropped: their leases lapse and another replica sends them.
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)
        if self._sender is not None:
            await self._sender.aclose()

    async def _loop(self) -> None:
        while True:
            try:
                await self.send_due()
            except Exception as exc:
                log.warning("cannot claim webhook deliveries: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.poll_seconds)
            self._wake.clear()

    async def send_due(self) -> int:
        """Claim due deliveries (as many as there is room for here) and start sending them."""
        room = self._settings.max_in_flight - len(self._sending)
        if room <= 0:
            return 0
        now = time.time()
        claimed = await self._storage.claim_deliveries(
            self._replica, now, now + self.lease_seconds, room, self._settings.max_per_destination
        )
        for delivery in claimed:
            task = asyncio.create_task(self._send(delivery), name=f"webhook-{delivery.delivery_id}")
            self._sending.add(task)
            task.add_done_callback(self._sent)
        return len(claimed)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        # A destination may have room again.
        self._wake.set()

    async def _send(self, delivery: Delivery) -> None:
        assert self._sender is not None
        secrets = await self._storage.signing_secrets(delivery.owner, time.time())
        if secrets:
            headers = signing.headers(
                [s.secret for s in secrets], delivery.delivery_id, int(time.time()), delivery.body
            )
            attempt = await self._sender.post(delivery.url, headers, delivery.body)
        else:
            attempt = Attempt(False, 0, f"tenant {delivery.owner!r} has no webhook signing secret")
        now = time.time()
        if attempt.delivered:
            status, next_at = DeliveryStatus.DELIVERED, now
        elif delivery.attempts >= self._settings.max_attempts:
            status, next_at = DeliveryStatus.DEAD, now
            log.warning(
                "webhook %s of run %s is dead after %d attempts: %s",
                delivery.delivery_id,
                delivery.run_id,
                delivery.attempts,
                attempt.error,
            )
        else:
            status = DeliveryStatus.PENDING
            next_at = now + backoff(self._settings, delivery.attempts, self._rng)
        await self._storage.delivery_attempted(
            delivery, self._replica, status, next_at, attempt.status_code, attempt.error, now
        )
