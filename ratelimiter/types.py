"""Domain values shared by the core, the back ends and the clients (no gRPC here)."""

from __future__ import annotations

import dataclasses
import enum


class Priority(enum.IntEnum):
    """Service classes on one key; the values match the proto's Priority."""

    INTERACTIVE = 1
    NORMAL = 2
    BATCH = 3


# Share of a contended key each class gets while all wait (stride scheduling):
# interactive callers go first, batch callers still get one grant in 21.
PRIORITY_WEIGHTS: dict[Priority, int] = {Priority.INTERACTIVE: 16, Priority.NORMAL: 4, Priority.BATCH: 1}


class Mode(enum.IntEnum):
    """Which budget answered; the values match the proto's BudgetMode."""

    SHARED = 1
    LOCAL = 2


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one acquire: granted after `wait_s` (0: now), or refused."""

    granted: bool
    wait_s: float = 0.0
    retry_after_s: float = 0.0
    # When the slot starts, on the store's clock (Unix seconds).
    granted_at: float = 0.0
    mode: Mode = Mode.SHARED
    # Names the grant in window limits' logs, so Reconcile can settle that very grant.
    grant_id: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Lease:
    """Tokens granted in one piece, to be spent by the holder until it expires."""

    lease_id: str
    key: str
    tokens: int
    wait_s: float
    expires_in_s: float
    granted_at: float
    mode: Mode


@dataclasses.dataclass(frozen=True, slots=True)
class LimitState:
    """A limit's live state, as DescribeLimit reports it."""

    available: int
    full_in_s: float
    paused_for_s: float
    waiting: int
    mode: Mode
    # Grants per second over the last 10 s, those that waited for their slot, and both since start.
    granted_per_s: float = 0.0
    waited_per_s: float = 0.0
    granted_total: int = 0
    waited_total: int = 0
