"""What the inspector reads from the database (its storage port) and what it hands the doors.

Times are seconds since the epoch (UTC); the doors format them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol


@dataclasses.dataclass(frozen=True)
class ReplicaBeat:
    """One heartbeat of a replica, as it writes its row."""

    name: str
    started_at: float
    heartbeat_at: float
    interval_s: float
    draining: bool
    running: int
    leases: int
    graphs: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class RunCount:
    """Runs of one tenant and graph in one status (active ones: all; ended: the last minute)."""

    owner: str
    graph_id: str
    status: str
    count: int
    # Of those, ended in the last 10 s (ended statuses only).
    recent: int = 0


@dataclasses.dataclass(frozen=True)
class FailedRun:
    owner: str
    run_id: str
    session_id: str
    graph_id: str
    error: str
    at: float


@dataclasses.dataclass(frozen=True)
class OverviewRows:
    """One read of everything the overview shows, for every tenant at once."""

    at: float
    replicas: Sequence[ReplicaBeat]
    active: Sequence[RunCount]
    ended: Sequence[RunCount]
    # Newest first.
    failed: Sequence[FailedRun]


class InspectorStore(Protocol):
    """The inspector's reads and the heartbeat's write (storage/inspector.py)."""

    async def beat(self, beat: ReplicaBeat, forget_before: float) -> None:
        """Write this replica's row; remove rows whose last beat is older than `forget_before`."""
        ...

    async def overview_rows(self, now: float, recent_failures: int) -> OverviewRows:
        """Replica rows, active runs by tenant/graph/status, runs ended in the minute before
        `now` likewise, and the newest `recent_failures` failed runs."""
        ...


# -- what the doors are handed ------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ReplicaView:
    name: str
    started_at: float
    heartbeat_at: float
    alive: bool
    draining: bool
    running: int
    # Runs waiting in the shared queue that this replica may claim (of the graphs it serves).
    queued: int
    leases: int


@dataclasses.dataclass(frozen=True)
class GraphLoad:
    graph_id: str
    running: int
    queued: int
    finished_last_minute: int
    errors_last_minute: int


@dataclasses.dataclass(frozen=True)
class RunError:
    run_id: str
    thread_id: str
    graph_id: str
    error: str
    at: float


@dataclasses.dataclass(frozen=True)
class Overview:
    """The overview as one tenant sees it: replicas are shared, runs are the tenant's own."""

    at: float
    runs_per_second: float
    queued: int
    running: int
    replicas: tuple[ReplicaView, ...]
    graphs: tuple[GraphLoad, ...]
    errors: tuple[RunError, ...]
    # Which read of the database it came from (the same for every subscriber of one tick).
    tick: int = 0
