"""The rate limits as the inspector shows them: the limiter's own ListLimits/DescribeLimit
(the sidecar's, shared by every replica, or the in-process limiter's), not this replica's memory."""

from __future__ import annotations

import dataclasses
import enum
import time

from stepstream.ratelimiter.client.base import Limiter, LimiterUnavailable
from stepstream.ratelimiter.types import Mode
from stepstream.server.core.errors import Unavailable


class LimiterKind(enum.StrEnum):
    SIDECAR = "sidecar"
    IN_PROCESS = "in-process"
    NONE = "none"


@dataclasses.dataclass(frozen=True)
class LimitView:
    key: str
    # "rate" (GCRA: rate per window_s, burst at once) or "window" (at most rate in any window_s).
    kind: str
    # The declared shape: gcra, sliding, fixed.
    shape: str
    rate: float
    burst: int
    window_s: float
    unit: str
    granted_per_s: float
    waits_per_s: float
    granted_total: int
    waited_total: int
    # Callers waiting in the key's line (on that limiter).
    queue: int
    available: int
    # Until when a reported 429 pauses the key; None: not paused.
    paused_until: float | None
    # "shared": the configured budget (Redis across sidecars, or the one in-process budget);
    # "local": the sidecar lost its store and a conservative local share answers.
    budget: str


@dataclasses.dataclass(frozen=True)
class Limits:
    kind: LimiterKind
    address: str | None
    limits: tuple[LimitView, ...]


async def describe(limiter: Limiter | None, address: str | None) -> Limits:
    """Every limit with its live state; Unavailable when the sidecar cannot be asked."""
    if limiter is None:
        return Limits(LimiterKind.NONE, None, ())
    try:
        described = await limiter.describe_limits()
    except LimiterUnavailable as exc:
        raise Unavailable(f"the rate limiter cannot be asked: {exc}") from exc
    now = time.time()
    views = tuple(
        LimitView(
            key=spec.key,
            kind="window" if spec.is_window else "rate",
            shape=spec.shape.value,
            rate=spec.rate,
            burst=spec.burst,
            window_s=spec.period_s,
            unit=spec.unit,
            granted_per_s=state.granted_per_s,
            waits_per_s=state.waited_per_s,
            granted_total=state.granted_total,
            waited_total=state.waited_total,
            queue=state.waiting,
            available=state.available,
            paused_until=now + state.paused_for_s if state.paused_for_s > 0 else None,
            budget="local" if state.mode is Mode.LOCAL else "shared",
        )
        for spec, state in described
    )
    kind = LimiterKind.SIDECAR if address else LimiterKind.IN_PROCESS
    return Limits(kind, address, views)
