"""The waiting line of one key: first come, first served within a priority class,
classes sharing the key by weight (stride scheduling).

Each class keeps a virtual "pass"; the class with the smallest pass is served
next and its pass advances by cost / weight. A class that was idle rejoins at
the current virtual time, so it neither hoards credit nor waits behind it: a
new interactive caller is served ahead of queued batch callers, and batch
callers still receive their weighted share, so no class starves.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator

from stepstream.ratelimiter.types import PRIORITY_WEIGHTS, Decision, Priority


class Waiter:
    """One queued caller; `future` receives its decision."""

    __slots__ = ("costs", "dead", "deadline_ns", "future", "grant_id", "priority", "timer", "tokens")

    def __init__(
        self, tokens: int, priority: Priority, deadline_ns: int, future: asyncio.Future[Decision]
    ) -> None:
        self.tokens = tokens
        self.priority = priority
        self.deadline_ns = deadline_ns
        self.future = future
        self.timer: asyncio.TimerHandle | None = None
        # The name its grant is logged under (window limits give it back by name).
        self.grant_id = ""
        # On a line of several keys: the tokens of each (`tokens` is the first's).
        self.costs: tuple[int, ...] = (tokens,)
        # Left the line without being served (refused at its deadline, or cancelled).
        self.dead = False


class FairQueue:
    def __init__(self) -> None:
        self._lines: dict[Priority, deque[Waiter]] = {p: deque() for p in Priority}
        self._pass: dict[Priority, float] = dict.fromkeys(Priority, 0.0)
        self._tokens: dict[Priority, int] = dict.fromkeys(Priority, 0)
        self._counts: dict[Priority, int] = dict.fromkeys(Priority, 0)
        self._vtime = 0.0
        self._live = 0

    def __len__(self) -> int:
        return self._live

    def push(self, waiter: Waiter) -> None:
        line = self._lines[waiter.priority]
        if not self._counts[waiter.priority]:
            self._pass[waiter.priority] = max(self._pass[waiter.priority], self._vtime)
        line.append(waiter)
        self._tokens[waiter.priority] += waiter.tokens
        self._counts[waiter.priority] += 1
        self._live += 1

    def discard(self, waiter: Waiter) -> None:
        """Take a waiter out of line unserved (it is skipped lazily)."""
        if waiter.dead:
            return
        waiter.dead = True
        self._tokens[waiter.priority] -= waiter.tokens
        self._counts[waiter.priority] -= 1
        self._live -= 1

    def served(self, waiter: Waiter) -> None:
        """Take a waiter that was just granted out of line; it must head its class."""
        line = self._lines[waiter.priority]
        while line and line[0].dead:
            line.popleft()
        head = line.popleft()
        assert head is waiter, "waiters are served in plan order"
        self._vtime = self._pass[waiter.priority]
        self._pass[waiter.priority] += waiter.tokens / PRIORITY_WEIGHTS[waiter.priority]
        self._tokens[waiter.priority] -= waiter.tokens
        self._counts[waiter.priority] -= 1
        self._live -= 1

    def tokens_ahead(self, priority: Priority) -> int:
        """Tokens queued in this class and the classes above it (served no later)."""
        return sum(n for p, n in self._tokens.items() if p <= priority)

    def plan(self, limit: int) -> list[Waiter]:
        """The next `limit` live waiters in the order they will be served."""
        for line in self._lines.values():
            while line and line[0].dead:
                line.popleft()
        heads: dict[Priority, Iterator[Waiter]] = {}
        current: dict[Priority, Waiter] = {}
        passes = dict(self._pass)
        for p, line in self._lines.items():
            it = (w for w in line if not w.dead)
            first = next(it, None)
            if first is not None:
                heads[p] = it
                current[p] = first
        out: list[Waiter] = []
        while current and len(out) < limit:
            # The smallest pass wins; ties go to the higher class (lower number).
            p = min(current, key=lambda c: (passes[c], c))
            waiter = current[p]
            out.append(waiter)
            passes[p] += waiter.tokens / PRIORITY_WEIGHTS[p]
            nxt = next(heads[p], None)
            if nxt is None:
                del current[p]
            else:
                current[p] = nxt
        return out

    def drain(self) -> list[Waiter]:
        """Every live waiter, emptying the line."""
        out = [w for line in self._lines.values() for w in line if not w.dead]
        for waiter in out:
            self.discard(waiter)
        for line in self._lines.values():
            line.clear()
        return out
