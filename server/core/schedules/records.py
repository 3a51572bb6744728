"""Crons, their fire records and webhook deliveries, as the core hands them out."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from stepstream.server.core import records as rec


class MisfirePolicy(enum.StrEnum):
    """What a due time nobody fired within the grace becomes (after a full outage)."""

    SKIP = "skip"
    FIRE_ONCE = "fire_once"


class FireOutcome(enum.StrEnum):
    PENDING = "pending"  # claimed by a replica that is starting its run
    RAN = "ran"
    REJECTED = "rejected"  # the session was busy and the busy policy is reject
    SKIPPED = "skipped"  # missed, and the misfire policy skipped it
    FAILED = "failed"  # the run could not be started (detail says why)


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


DEFAULT_MISFIRE_GRACE_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class CronSpec:
    """What a cron asks for: a schedule (expression or interval) and the run of each fire."""

    cron: str = ""
    interval_seconds: float = 0.0
    timezone: str = ""
    graph_id: str = ""
    assistant_id: str = ""
    session_id: str = ""
    input_json: str = ""
    context_json: str = ""
    options: rec.RunOptions = dataclasses.field(default_factory=rec.RunOptions)
    webhook: str = ""
    misfire_policy: MisfirePolicy = MisfirePolicy.SKIP
    misfire_grace_seconds: float = DEFAULT_MISFIRE_GRACE_SECONDS
    end_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        raw = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        raw["options"] = self.options.to_json()
        raw["misfire_policy"] = self.misfire_policy.value
        return raw

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> CronSpec:
        raw = dict(raw)
        raw["options"] = rec.RunOptions.from_json(raw.get("options") or {})
        raw["misfire_policy"] = MisfirePolicy(raw.get("misfire_policy") or MisfirePolicy.SKIP)
        return cls(**raw)


@dataclasses.dataclass(frozen=True)
class Cron:
    cron_id: str
    owner: str
    spec: CronSpec
    paused: bool
    # The next due time not yet handled (None: paused, or past end_at).
    next_fire_at: float | None
    # Interval schedules count from here (creation, resume or update).
    anchor_at: float
    created_at: float
    updated_at: float
    # The next due times, filled in for callers (not stored).
    next_fire_times: tuple[float, ...] = ()


@dataclasses.dataclass(frozen=True)
class CronFire:
    cron_id: str
    owner: str
    due_at: float
    outcome: FireOutcome
    run_id: str = ""
    session_id: str = ""
    detail: str = ""
    recorded_at: float = 0.0


@dataclasses.dataclass(frozen=True)
class FirePlan:
    """What the scheduler does with a due cron: records to write and the next due time."""

    fires: list[tuple[float, FireOutcome]]
    next_fire_at: float | None


@dataclasses.dataclass(frozen=True)
class Delivery:
    delivery_id: str
    owner: str
    run_id: str
    url: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: float
    created_at: float
    body: bytes = b""
    last_status_code: int = 0
    last_error: str = ""
    delivered_at: float | None = None


@dataclasses.dataclass(frozen=True)
class SigningSecret:
    owner: str
    secret: str  # "whsec_" + base64 of the key
    created_at: float
    # None: the current secret; else the end of its rotation overlap.
    expires_at: float | None = None
