"""The back-end interface and its results."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

from stepstream.ratelimiter.config import LimitSpec
from stepstream.ratelimiter.types import Mode


@dataclasses.dataclass(slots=True)
class BatchResult:
    """The outcome of reserving several requests of one key, in order.

    Requests are granted in the order given and the first that cannot be
    granted within `max_wait` stops the batch, so nobody overtakes it.
    """

    # One per granted request, in order: nanoseconds from now until its slot starts.
    waits_ns: list[int]
    # For the first request not granted: nanoseconds until it could be.
    retry_after_ns: int | None
    # The store's clock at the decision, Unix nanoseconds.
    epoch_ns: int
    mode: Mode = Mode.SHARED


@dataclasses.dataclass(frozen=True, slots=True)
class Peek:
    available: int
    full_in_ns: int
    paused_for_ns: int
    mode: Mode = Mode.SHARED


class Backend(Protocol):
    async def reserve(
        self, spec: LimitSpec, requests: Sequence[tuple[int, int]], ids: Sequence[str] = ()
    ) -> BatchResult:
        """Grant (tokens, max_wait_ns) requests in order; the first that cannot be granted stops.

        `ids` names each request's grant (window limits log it under that name, so
        it can be given back or settled later); without them names are made up."""
        ...

    async def reserve_set(
        self, specs: Sequence[LimitSpec], requests: Sequence[tuple[Sequence[int], int]], ids: Sequence[str]
    ) -> BatchResult:
        """Requests over several keys, each all or nothing (`reserve_many` for one): (tokens
        per key, max_wait_ns) each, in order; the first that cannot be granted stops the batch."""
        ...

    async def adjust(self, spec: LimitSpec, tokens: int, grant_id: str = "", reserved: int = 0) -> Mode:
        """Charge (tokens > 0) or give back (tokens < 0) budget; with the grant's id (and
        the tokens it `reserved`), a window limit changes that grant in its log."""
        ...

    async def observe(self, spec: LimitSpec, remaining: int, reset_after_ns: int | None) -> tuple[int, Mode]:
        """The API says `remaining` tokens are left (until `reset_after_ns`, when known):
        consume what it has fewer of than this key thinks. Returns the tokens consumed."""
        ...

    async def pause(self, spec: LimitSpec, duration_ns: int) -> Mode: ...

    async def hold(self, spec: LimitSpec, duration_ns: int) -> None:
        """Grant nothing for `duration_ns`, then one token an interval (a pause nobody reported)."""
        ...

    async def peek(self, spec: LimitSpec) -> Peek: ...

    async def record(self, spec: LimitSpec, grants: Sequence[tuple[int, int]]) -> None:
        """Window limits: log grants made elsewhere, as (ns from now, tokens) each."""
        ...

    async def close(self) -> None: ...


async def reserve_many(
    backend: Backend, items: Sequence[tuple[LimitSpec, int]], max_wait_ns: int, grant_id: str
) -> BatchResult:
    """One request over several keys, all or nothing: (spec, tokens) each, one slot for all
    of them, the earliest at which every key can grant its tokens."""
    return await backend.reserve_set(
        [s for s, _ in items], [([n for _, n in items], max_wait_ns)], [grant_id]
    )
