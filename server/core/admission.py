"""Admission per tenant: how fast an owner may start runs, and how many it may have in flight.

The start rate is the project's own GCRA (stepstream.ratelimiter.gcra), one
bucket per owner in this replica: N replicas admit up to N times the rate.
Runs in flight are the owner's queued and running runs in the database, so the
cap holds across replicas and restarts (starts racing on several replicas may
pass it by the number of such races). Either limit refuses with
ResourceExhausted and a retry time (RESOURCE_EXHAUSTED with RetryInfo) before
anything is stored.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from stepstream.ratelimiter.config import LimitSpec
from stepstream.ratelimiter.gcra import NS_PER_TICK_MEMORY, Gcra, reserve
from stepstream.server.core.errors import ResourceExhausted

NS = 1_000_000_000


class TenantAdmission:
    def __init__(
        self,
        runs_per_second: float,
        burst: int,
        max_in_flight: int,
        in_flight: Callable[[str], Awaitable[int]] | None = None,
        in_flight_retry_after: float = 1.0,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        """runs_per_second 0: no start-rate limit; max_in_flight 0: no in-flight limit.

        `in_flight(owner)`: the owner's queued and running runs (the store's count)."""
        self._gcra = (
            Gcra.from_spec(LimitSpec("runs", runs_per_second, 1.0, burst), NS_PER_TICK_MEMORY)
            if runs_per_second > 0
            else None
        )
        self._max_in_flight = max_in_flight
        self._in_flight = in_flight
        self._retry_after = in_flight_retry_after
        self._clock = clock
        # Theoretical arrival time of each owner's bucket; owners whose bucket is full are dropped.
        self._tat: dict[str, int] = {}

    async def admit(self, owner: str) -> None:
        """Let one more run of `owner` start, or raise ResourceExhausted."""
        if self._max_in_flight and self._in_flight is not None:
            self.check_in_flight(await self._in_flight(owner))
        self.take_start(owner)

    def check_in_flight(self, in_flight: int) -> None:
        if self._max_in_flight and in_flight >= self._max_in_flight:
            raise ResourceExhausted(
                f"{in_flight} runs of yours are queued or running (at most {self._max_in_flight}); "
                "retry when one has ended",
                self._retry_after,
            )

    def take_start(self, owner: str) -> None:
        """Take one start from the owner's bucket, or raise ResourceExhausted."""
        if self._gcra is None:
            return
        now = self._clock()
        decision = reserve(self._tat.get(owner, now), now, self._gcra.cost(1), self._gcra.tolerance, 0)
        if not decision.granted:
            raise ResourceExhausted(
                f"runs started too fast (at most {self._gcra.burst} at once, then a steady rate); "
                "retry later",
                decision.retry_after / NS,
            )
        self._tat[owner] = decision.tat
        if len(self._tat) > 10_000:
            self._tat = {o: t for o, t in self._tat.items() if t > now}
