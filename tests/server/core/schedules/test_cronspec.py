"""Due times of crons and the misfire plan: pure functions, every replica computing the same."""

from __future__ import annotations

import datetime
import zoneinfo

import pytest

from stepstream.server.core.errors import InvalidArgument
from stepstream.server.core.schedules import cronspec
from stepstream.server.core.schedules.records import Cron, CronSpec, FireOutcome, MisfirePolicy


def _cron(spec: CronSpec, next_fire_at: float, anchor: float = 0.0) -> Cron:
    return Cron("c", "o", spec, False, next_fire_at, anchor, anchor, anchor)


def test_seconds_expression_and_time_zone() -> None:
    every_10s = CronSpec(cron="*/10 * * * * *")
    assert cronspec.next_after(every_10s, 0, 1000.0) == 1010.0
    assert cronspec.next_after(every_10s, 0, 1010.0) == 1020.0
    # 09:00 in Paris is 08:00 UTC in winter, 07:00 UTC in summer.
    paris = CronSpec(cron="0 9 * * *", timezone="Europe/Paris")
    winter = datetime.datetime(2026, 1, 10, tzinfo=datetime.UTC).timestamp()
    summer = datetime.datetime(2026, 7, 10, tzinfo=datetime.UTC).timestamp()
    due_winter = cronspec.next_after(paris, 0, winter)
    due_summer = cronspec.next_after(paris, 0, summer)
    assert due_winter is not None and due_summer is not None
    assert datetime.datetime.fromtimestamp(due_winter, datetime.UTC).hour == 8
    assert datetime.datetime.fromtimestamp(due_summer, datetime.UTC).hour == 7
    local = datetime.datetime.fromtimestamp(due_summer, zoneinfo.ZoneInfo("Europe/Paris"))
    assert (local.hour, local.minute) == (9, 0)


def test_intervals_count_from_the_anchor_and_stop_at_the_end() -> None:
    spec = CronSpec(interval_seconds=2.5, end_at=110.0)
    assert cronspec.next_after(spec, 100.0, 100.0) == 102.5
    assert cronspec.next_after(spec, 100.0, 104.0) == 105.0
    assert cronspec.upcoming(spec, 100.0, 102.5, 10) == (102.5, 105.0, 107.5, 110.0)
    assert cronspec.next_after(spec, 100.0, 110.0) is None


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (CronSpec(cron="61 * * * *"), "spec.cron"),
        (CronSpec(cron="* * *"), "spec.cron"),
        (CronSpec(cron="* * * * *", interval_seconds=5), "spec.schedule"),
        (CronSpec(), "spec.schedule"),
        (CronSpec(interval_seconds=0.5), "spec.interval_seconds"),
        (CronSpec(interval_seconds=float("inf")), "spec.interval_seconds"),
        (CronSpec(cron="* * * * *", timezone="Mars/Olympus"), "spec.timezone"),
        (CronSpec(cron="* * * * *", misfire_grace_seconds=-1), "spec.misfire_grace_seconds"),
    ],
)
def test_bad_schedules_name_the_field(spec: CronSpec, field: str) -> None:
    with pytest.raises(InvalidArgument) as bad:
        cronspec.validate(spec)
    assert bad.value.field == field


def test_a_due_time_within_the_grace_fires() -> None:
    plan = cronspec.plan(_cron(CronSpec(interval_seconds=1, misfire_grace_seconds=5), 10.0), now=12.5)
    assert plan.fires == [
        (10.0, FireOutcome.PENDING),
        (11.0, FireOutcome.PENDING),
        (12.0, FireOutcome.PENDING),
    ]
    assert plan.next_fire_at == 13.0


def test_after_an_outage_skip_records_every_missed_time() -> None:
    spec = CronSpec(interval_seconds=10, misfire_grace_seconds=15)
    plan = cronspec.plan(_cron(spec, 10.0), now=100.0)
    assert [t for t, _ in plan.fires] == [10.0 * k for k in range(1, 11)]
    # Due times older than the grace are skipped; the recent ones still fire.
    assert [o for t, o in plan.fires if t < 85.0] == [FireOutcome.SKIPPED] * 8
    assert [o for t, o in plan.fires if t >= 85.0] == [FireOutcome.PENDING] * 2
    assert plan.next_fire_at == 110.0


def test_after_an_outage_fire_once_fires_the_newest_missed_time_only() -> None:
    spec = CronSpec(interval_seconds=10, misfire_grace_seconds=1, misfire_policy=MisfirePolicy.FIRE_ONCE)
    plan = cronspec.plan(_cron(spec, 10.0), now=95.0)
    outcomes = dict(plan.fires)
    assert outcomes.pop(90.0) == FireOutcome.PENDING
    assert set(outcomes.values()) == {FireOutcome.SKIPPED}
    assert len(plan.fires) == 9
