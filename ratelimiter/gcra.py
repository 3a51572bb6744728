"""GCRA, the exact token bucket, in whole clock ticks.

A key's whole state is one integer, the theoretical arrival time (TAT): the
time at which the bucket would be full again. Taking n tokens moves it
`cost(n)` ticks later; the take is allowed once the TAT, less the bucket's
tolerance, is not in the future. So over any window of W seconds at most
rate * W + burst tokens are granted (no doubling at window edges, unlike fixed
windows), there is no background refill, and a caller that must wait learns
exactly when its slot starts, which is what lets the limiter reserve slots in
arrival order instead of making callers poll.

Everything is integer arithmetic on ticks (nanoseconds in memory, microseconds
in Redis, whose Lua numbers are doubles): `cost` rounds each grant up to a
whole tick, so rounding only ever grants slightly less, never more. The same
formulas run inside the Redis script, which receives the integers computed
here and only adds the clock.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

from stepstream.ratelimiter.config import LimitSpec

NS_PER_TICK_MEMORY = 1
NS_PER_TICK_REDIS = 1_000


class Gcra:
    """The parameters of one limit in ticks of `ns_per_tick` nanoseconds."""

    __slots__ = ("_costs", "burst", "interval", "tolerance")

    def __init__(self, interval: Fraction, burst: int) -> None:
        # Ticks per token, as an exact fraction (period / rate).
        self.interval = interval
        self.burst = burst
        # Costs of the sizes asked so far: Fraction arithmetic is slow for a hot path.
        self._costs: dict[int, int] = {}
        # How far the TAT may run ahead of now: a full bucket of `burst` tokens.
        self.tolerance = self.cost(burst)

    @classmethod
    def from_spec(cls, spec: LimitSpec, ns_per_tick: int) -> Gcra:
        # Fraction(str(x)) keeps the decimal the user wrote: 0.1/s is exactly 1/10.
        period_ticks = Fraction(str(spec.period_s)) * 1_000_000_000 / ns_per_tick
        return cls(interval=period_ticks / Fraction(str(spec.rate)), burst=spec.burst)

    def cost(self, tokens: int) -> int:
        """Ticks that `tokens` tokens move the TAT, rounded up."""
        cached = self._costs.get(tokens)
        if cached is None:
            scaled = self.interval * tokens
            cached = -(-scaled.numerator // scaled.denominator)
            if len(self._costs) < 4096:
                self._costs[tokens] = cached
        return cached

    def available(self, tat: int, now: int) -> int:
        """Tokens that could be taken at once now."""
        room = self.tolerance - max(tat - now, 0)
        if room <= 0:
            return 0
        return min(self.burst, int(Fraction(room) / self.interval))


@dataclasses.dataclass(frozen=True)
class Reservation:
    """One decision: granted after `wait` ticks (0: now), or refused."""

    granted: bool
    # GRANTED: ticks from now until the slot starts.
    wait: int
    # REFUSED: ticks from now until a retry could be granted.
    retry_after: int
    # The TAT after the decision (unchanged when refused).
    tat: int


def reserve(tat: int, now: int, cost: int, tolerance: int, max_wait: int) -> Reservation:
    """Take `cost` ticks of budget now, or in the earliest slot within `max_wait` ticks."""
    new_tat = max(tat, now) + cost
    wait = max(new_tat - tolerance - now, 0)
    if wait <= max_wait:
        return Reservation(True, wait, 0, new_tat)
    return Reservation(False, 0, wait, tat)


def pause(tat: int, now: int, duration: int, tolerance: int, unit_cost: int) -> int:
    """The TAT after a reported 429: nothing is granted for `duration` ticks, then
    tokens come back one interval apart (no burst right after a throttle)."""
    return max(tat, now + duration + tolerance - unit_cost)


def adjust(tat: int, now: int, delta: int) -> int:
    """Charge (delta > 0) or give back (delta < 0) ticks of budget.

    A charge is debt: it is added even past the tolerance, because the tokens
    were already spent. A refund never makes the bucket fuller than full.
    """
    if delta >= 0:
        return max(tat, now) + delta
    return max(tat + delta, now) if tat > now else tat


def earliest(tat: int, now: int, cost: int, tolerance: int) -> int:
    """The earliest slot, not before now, at which `cost` ticks fit (for a grant that
    may be placed later than that, as one slot shared by several keys is)."""
    return max(now, tat + cost - tolerance)


def commit(tat: int, at: int, cost: int) -> int:
    """The TAT after a grant whose slot starts at `at` (any time from `earliest` on).

    The grant takes the segment [max(tat, at), max(tat, at) + cost) of the virtual
    schedule, which ends no later than at + tolerance: so any window [a, b] holds
    grants worth at most b - a + tolerance ticks, whatever order slots are placed in.
    """
    return max(tat, at) + cost
