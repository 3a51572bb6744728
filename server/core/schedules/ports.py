"""What crons and webhooks need of storage (server/storage/schedules.py implements it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from stepstream.server.core import records as rec
from stepstream.server.core.ports import Write
from stepstream.server.core.schedules.records import (
    Cron,
    CronFire,
    Delivery,
    DeliveryStatus,
    FireOutcome,
    FirePlan,
    SigningSecret,
)
from stepstream.server.core.start import StartRunRequest

# (creation or due time, id) of the last item of a page.
PageKey = tuple[float, str]


class ScheduleStorage(Protocol):
    def is_unique_violation(self, exc: BaseException) -> bool: ...

    # -- crons ---------------------------------------------------------------------------------
    async def insert_cron(self, cron: Cron) -> None:
        """Raises what the database raised for a taken id (see is_unique_violation)."""
        ...

    async def get_cron(self, owner: str, cron_id: str) -> Cron | None: ...

    async def list_crons(self, owner: str, session_id: str, size: int, after: PageKey | None) -> list[Cron]:
        """Newest first, up to `size`, after the page key."""
        ...

    async def save_cron(self, cron: Cron) -> bool:
        """Store the cron's spec, pause, anchor and next due time; False if it is gone."""
        ...

    async def delete_cron(self, owner: str, cron_id: str) -> bool:
        """Delete the cron and its fire records; False if there was none."""
        ...

    async def claim_fires(
        self, replica: str, now: float, lease_until: float, limit: int, plan: Callable[[Cron], FirePlan]
    ) -> tuple[list[tuple[CronFire, Cron]], float | None]:
        """In one transaction: move due crons past what `plan` handles, record their fires
        (pending ones leased to `replica`), and take over pending fires whose lease lapsed.
        The pending fires now held here, with their crons; the earliest next due time."""
        ...

    async def settle_fire(
        self, fire: CronFire, replica: str, outcome: FireOutcome, run_id: str, session_id: str, detail: str
    ) -> bool:
        """Record what became of a pending fire held by `replica`; False if it was not held."""
        ...

    async def release_fire(self, fire: CronFire, replica: str) -> None:
        """Give a pending fire back at once (its run could not be started yet)."""
        ...

    async def list_fires(
        self, owner: str, cron_id: str, size: int, after: PageKey | None
    ) -> list[CronFire]: ...

    # -- webhook deliveries --------------------------------------------------------------------
    def delivery_write(
        self, delivery: Delivery, destination: str, holder: str | None, attempt: int = 0
    ) -> Write:
        """The insert of a delivery, for the run end's transaction; with `holder`, only while
        that replica still holds the run's `attempt` (a replica that lost it, or an earlier
        attempt of a run that came back to the same replica, stores nothing)."""
        ...

    async def claim_deliveries(
        self, replica: str, now: float, lease_until: float, limit: int, per_destination: int
    ) -> list[Delivery]:
        """Due deliveries, at most `per_destination` in flight per destination cluster-wide."""
        ...

    async def delivery_attempted(
        self,
        delivery: Delivery,
        replica: str,
        status: DeliveryStatus,
        next_attempt_at: float,
        status_code: int,
        error: str,
        now: float,
    ) -> bool: ...

    async def list_deliveries(
        self,
        owner: str,
        run_id: str,
        statuses: Sequence[DeliveryStatus],
        size: int,
        after: PageKey | None,
    ) -> list[Delivery]: ...

    # -- signing secrets -----------------------------------------------------------------------
    async def signing_secrets(self, owner: str, now: float) -> list[SigningSecret]:
        """The tenant's secrets in force, newest first."""
        ...


class RunStarter(Protocol):
    """The core's start-run operation, which every fire goes through (Core.start_run)."""

    async def start_run(self, req: StartRunRequest) -> rec.Run: ...

    async def check_start(self, req: StartRunRequest) -> str:
        """Every check start_run makes, nothing stored; the graph the run would execute."""
        ...
