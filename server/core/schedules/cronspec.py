"""Due times of a cron: a cron expression (croniter) read in a time zone, or an interval.

Every replica must compute the same due times for a cron, since a fire record is
unique per (cron, due time): interval due times are anchor + k * interval for a
whole k, and every time is rounded to the millisecond.
"""

from __future__ import annotations

import datetime
import math
import zoneinfo

from croniter import croniter
from croniter.croniter import CroniterError

from stepstream.server.core.errors import InvalidArgument
from stepstream.server.core.schedules.records import Cron, CronSpec, FireOutcome, FirePlan, MisfirePolicy

MIN_INTERVAL_SECONDS = 1.0
# Fire records one scheduler pass writes for one cron at most (the rest: next pass).
MAX_FIRES_PER_PASS = 500


def _ms(t: float) -> float:
    return round(t, 3)


def zone(name: str) -> datetime.tzinfo:
    if not name:
        return datetime.UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidArgument("spec.timezone", f"unknown time zone {name!r} (use an IANA name)") from exc


def _has_seconds(expression: str) -> bool:
    return len(expression.split()) == 6


def validate(spec: CronSpec) -> None:
    """INVALID_ARGUMENT naming the field, for a schedule that cannot be computed."""
    if bool(spec.cron) == bool(spec.interval_seconds):
        raise InvalidArgument("spec.schedule", "give exactly one of cron and interval_seconds")
    if spec.interval_seconds and (
        not math.isfinite(spec.interval_seconds) or spec.interval_seconds < MIN_INTERVAL_SECONDS
    ):
        raise InvalidArgument("spec.interval_seconds", f"must be at least {MIN_INTERVAL_SECONDS:g}")
    tz = zone(spec.timezone)
    if spec.cron:
        fields = len(spec.cron.split())
        if fields not in (5, 6):
            raise InvalidArgument(
                "spec.cron",
                f"{spec.cron!r} has {fields} fields; give 5 (minute hour day month weekday) "
                "or 6 with a leading seconds field",
            )
        try:
            croniter(spec.cron, datetime.datetime.now(tz), second_at_beginning=_has_seconds(spec.cron))
        except (CroniterError, ValueError, KeyError) as exc:
            raise InvalidArgument(
                "spec.cron", f"{spec.cron!r} is not a valid cron expression: {exc}"
            ) from None
    if spec.misfire_grace_seconds < 0 or not math.isfinite(spec.misfire_grace_seconds):
        raise InvalidArgument("spec.misfire_grace_seconds", "must be a positive number of seconds")


def next_after(spec: CronSpec, anchor: float, t: float) -> float | None:
    """The first due time strictly after `t`; None past end_at."""
    if spec.interval_seconds:
        step = spec.interval_seconds
        k = max(1, math.floor((t - anchor) / step) + 1)
        due = _ms(anchor + k * step)
        while due <= t:
            k += 1
            due = _ms(anchor + k * step)
    else:
        tz = zone(spec.timezone)
        start = datetime.datetime.fromtimestamp(t, tz)
        it = croniter(spec.cron, start, second_at_beginning=_has_seconds(spec.cron))
        due = _ms(float(it.get_next(float)))
        while due <= t:
            due = _ms(float(it.get_next(float)))
    if spec.end_at is not None and due > spec.end_at:
        return None
    return due


def upcoming(spec: CronSpec, anchor: float, start: float | None, count: int) -> tuple[float, ...]:
    """`count` due times from `start` on (inclusive)."""
    if start is None:
        return ()
    times = [start]
    while len(times) < count:
        nxt = next_after(spec, anchor, times[-1])
        if nxt is None:
            break
        times.append(nxt)
    return tuple(times)


def plan(cron: Cron, now: float, limit: int = MAX_FIRES_PER_PASS) -> FirePlan:
    """The due times of `cron` up to `now`: each fires, or is skipped when missed.

    A due time more than the grace in the past is missed (nobody could fire it: every
    replica was down). SKIP records each missed one as skipped; FIRE_ONCE fires the newest
    missed one and skips those before it.
    """
    spec = cron.spec
    missed_before = now - spec.misfire_grace_seconds
    fires: list[tuple[float, FireOutcome]] = []
    due = cron.next_fire_at
    while due is not None and due <= now and len(fires) < limit:
        following = next_after(spec, cron.anchor_at, due)
        if due >= missed_before or (
            spec.misfire_policy == MisfirePolicy.FIRE_ONCE
            and (following is None or following >= missed_before)
        ):
            outcome = FireOutcome.PENDING
        else:
            outcome = FireOutcome.SKIPPED
        fires.append((due, outcome))
        due = following
    return FirePlan(fires, due)
