"""Crons: create, read, change and delete them, and fire them from every replica.

Each replica's scheduler claims due crons in the database (storage moves a
cron's next due time and records its fires in one transaction, so one replica
handles each due time), then starts each fire's run through the core's ordinary
start-run operation, with a run id derived from the cron and the due time: should
the replica die before it records the outcome, the replica that takes the fire
over finds the run already started instead of starting a second one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time

from stepstream.server.core.errors import (
    AlreadyExists,
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    SessionBusy,
    StepstreamError,
    Unavailable,
)
from stepstream.server.core.ids import new_id
from stepstream.server.core.jsonio import dumps, parse_field
from stepstream.server.core.schedules import cronspec
from stepstream.server.core.schedules.ports import PageKey, RunStarter, ScheduleStorage
from stepstream.server.core.schedules.records import Cron, CronFire, CronSpec, FireOutcome
from stepstream.server.core.start import OptionsRequest, StartRunRequest

log = logging.getLogger(__name__)

CRON_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
# Due times shown with a cron.
NEXT_FIRE_TIMES = 5
# Due crons one scheduler pass claims at most.
CRONS_PER_PASS = 100
# Errors after which a fire is tried again (until its misfire grace has passed).
_TRANSIENT = (ResourceExhausted, Unavailable, DeadlineExceeded)


def fire_run_id(cron_id: str, due_at: float) -> str:
    """The run id of a fire: the same on every replica, so a fire starts at most one run."""
    return f"cron.{cron_id}.{round(due_at * 1000)}"


class CronManager:
    def __init__(
        self,
        storage: ScheduleStorage,
        starter: RunStarter,
        replica: str,
        lease_seconds: float,
        poll_seconds: float,
    ) -> None:
        self._storage = storage
        self._starter = starter
        self._replica = replica
        self._lease_seconds = lease_seconds
        self._poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._firing: set[asyncio.Task[None]] = set()

    # -- the API -------------------------------------------------------------------------------
    async def _validated(self, owner: str, spec: CronSpec) -> CronSpec:
        """The spec checked as each fire's start will be (nothing stored), its graph filled in."""
        cronspec.validate(spec)
        parse_field("spec.input_json", spec.input_json)
        try:
            graph_id = await self._starter.check_start(start_request(owner, spec, "", field="spec."))
        except NotFound as exc:
            # What the cron names must exist now: an unknown one is a bad argument of the cron.
            what = str(exc).split(" ", 1)[0]
            field = {"assistant": "spec.assistant_id", "session": "spec.session_id"}.get(
                what, "spec.graph_id"
            )
            raise InvalidArgument(field, str(exc)) from None
        return dataclasses.replace(spec, graph_id=graph_id)

    def _shown(self, cron: Cron) -> Cron:
        times = (
            ()
            if cron.paused
            else cronspec.upcoming(cron.spec, cron.anchor_at, cron.next_fire_at, NEXT_FIRE_TIMES)
        )
        return dataclasses.replace(cron, next_fire_times=times)

    async def create(self, owner: str, spec: CronSpec, cron_id: str = "", paused: bool = False) -> Cron:
        if cron_id and not CRON_ID.match(cron_id):
            raise InvalidArgument("cron_id", "must be 1-40 characters of A-Z a-z 0-9 _ -")
        spec = await self._validated(owner, spec)
        now = round(time.time(), 3)
        cron = Cron(
            cron_id=cron_id or new_id().replace("-", ""),
            owner=owner,
            spec=spec,
            paused=paused,
            next_fire_at=None if paused else cronspec.next_after(spec, now, now),
            anchor_at=now,
            created_at=now,
            updated_at=now,
        )
        try:
            await self._storage.insert_cron(cron)
        except Exception as exc:
            if self._storage.is_unique_violation(exc):
                raise AlreadyExists(f"cron id {cron.cron_id!r} is taken") from None
            raise
        self._wake.set()
        return self._shown(cron)

    async def get(self, owner: str, cron_id: str) -> Cron:
        cron = await self._storage.get_cron(owner, cron_id)
        if cron is None:
            raise NotFound(f"cron {cron_id!r} not found")
        return self._shown(cron)

    async def list_crons(self, owner: str, session_id: str, size: int, after: PageKey | None) -> list[Cron]:
        return [self._shown(c) for c in await self._storage.list_crons(owner, session_id, size, after)]

    async def _save(self, cron: Cron) -> Cron:
        if not await self._storage.save_cron(cron):
            raise NotFound(f"cron {cron.cron_id!r} not found")
        self._wake.set()
        return self._shown(cron)

    def _rescheduled(self, cron: Cron, spec: CronSpec, paused: bool) -> Cron:
        """The cron with its schedule counted from now (what was due while paused is not)."""
        now = round(time.time(), 3)
        return dataclasses.replace(
            cron,
            spec=spec,
            paused=paused,
            anchor_at=now,
            next_fire_at=None if paused else cronspec.next_after(spec, now, now),
            updated_at=now,
        )

    async def update(self, owner: str, cron_id: str, spec: CronSpec) -> Cron:
        cron = await self.get(owner, cron_id)
        spec = await self._validated(owner, spec)
        return await self._save(self._rescheduled(cron, spec, cron.paused))

    async def pause(self, owner: str, cron_id: str) -> Cron:
        cron = await self.get(owner, cron_id)
        return await self._save(self._rescheduled(cron, cron.spec, True))

    async def resume(self, owner: str, cron_id: str) -> Cron:
        cron = await self.get(owner, cron_id)
        if not cron.paused:
            return cron
        return await self._save(self._rescheduled(cron, cron.spec, False))

    async def delete(self, owner: str, cron_id: str) -> None:
        if not await self._storage.delete_cron(owner, cron_id):
            raise NotFound(f"cron {cron_id!r} not found")

    async def fires(self, owner: str, cron_id: str, size: int, after: PageKey | None) -> list[CronFire]:
        await self.get(owner, cron_id)
        return await self._storage.list_fires(owner, cron_id, size, after)

    # -- the scheduler -------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="cron-scheduler")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._firing):
            task.cancel()
        await asyncio.gather(*self._firing, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            wait = self._poll_seconds
            try:
                wait = await self.tick()
            except Exception as exc:
                log.warning("cannot claim due crons: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()

    async def tick(self) -> float:
        """Claim what is due and fire it; seconds until the next look."""
        now = time.time()
        held, earliest = await self._storage.claim_fires(
            self._replica,
            now,
            now + self._lease_seconds,
            CRONS_PER_PASS,
            lambda cron: cronspec.plan(cron, now),
        )
        # Fired in the background: a slow start never holds up the next due time (a fire
        # still starting when its lease lapses is taken over; its run id prevents a second run).
        for fire, cron in held:
            task = asyncio.create_task(self._fire(fire, cron), name=f"cron-fire-{cron.cron_id}")
            self._firing.add(task)
            task.add_done_callback(self._firing.discard)
        if earliest is None:
            return self._poll_seconds
        return min(self._poll_seconds, max(0.0, earliest - time.time()))

    async def _fire(self, fire: CronFire, cron: Cron) -> None:
        run_id = fire_run_id(cron.cron_id, fire.due_at)
        outcome, session_id, detail = FireOutcome.RAN, cron.spec.session_id, ""
        try:
            req = start_request(cron.owner, cron.spec, run_id, cron_id=cron.cron_id, due_at=fire.due_at)
            run = await self._starter.start_run(req)
            session_id = run.session_id
        except AlreadyExists:
            pass  # started by this fire's earlier holder
        except SessionBusy as exc:
            outcome, detail = FireOutcome.REJECTED, str(exc)
        except Exception as exc:
            late = time.time() - fire.due_at > cron.spec.misfire_grace_seconds
            transient = isinstance(exc, _TRANSIENT) or not isinstance(exc, StepstreamError)
            if transient and not late:
                log.info("cron %s: fire due at %.3f not started yet: %s", cron.cron_id, fire.due_at, exc)
                with contextlib.suppress(Exception):
                    await self._storage.release_fire(fire, self._replica)
                return
            outcome, detail = FireOutcome.FAILED, f"{type(exc).__name__}: {exc}"
        ran = outcome == FireOutcome.RAN
        await self._storage.settle_fire(
            fire, self._replica, outcome, run_id if ran else "", session_id if ran else "", detail
        )


def start_request(
    owner: str, spec: CronSpec, run_id: str, *, cron_id: str = "", due_at: float = 0.0, field: str = ""
) -> StartRunRequest:
    """The start of one fire's run (or, with `field`, the check of a cron's spec: errors then
    name the spec's fields). Each run's metadata says which cron and due time it is from."""
    options = spec.options
    metadata = dict(options.metadata)
    if cron_id:
        metadata.update(cron_id=cron_id, cron_due_at=due_at)
    return StartRunRequest(
        owner=owner,
        # An assistant's graph is the assistant's (its live version at each fire).
        graph_id="" if spec.assistant_id else spec.graph_id,
        assistant_id=spec.assistant_id,
        session_id=spec.session_id,
        input_json=spec.input_json,
        context_json=spec.context_json,
        options=OptionsRequest(
            max_concurrency=options.max_concurrency,
            busy_policy=options.busy_policy,
            recursion_limit=options.recursion_limit,
            configurable_json=dumps(options.configurable) if options.configurable else "",
            metadata_json=dumps(metadata) if metadata else "",
            interrupt_before=options.interrupt_before,
            interrupt_after=options.interrupt_after,
        ),
        run_id=run_id,
        webhook=spec.webhook,
        options_field=f"{field}options",
        context_field=f"{field}context_json",
        webhook_field=f"{field}webhook",
        command_field=f"{field}command",
    )
