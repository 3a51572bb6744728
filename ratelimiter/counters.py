"""Grants per key, per second over the last few seconds, for DescribeLimit (the inspector's
"grants and waits per second").

One bucket per second: counting a grant is an addition to the newest bucket (a new one each
second), so the acquire path pays next to nothing for it.
"""

from __future__ import annotations

import collections
import time

# Seconds the per-second rates are averaged over.
WINDOW_SECONDS = 10


class GrantCounter:
    __slots__ = ("_buckets", "granted_total", "waited_total")

    def __init__(self) -> None:
        # [second, grants, grants that waited], oldest first, at most WINDOW_SECONDS + 1.
        self._buckets: collections.deque[list[int]] = collections.deque(maxlen=WINDOW_SECONDS + 1)
        self.granted_total = 0
        self.waited_total = 0

    def add(self, waited: bool, now: float | None = None) -> None:
        second = int(time.monotonic() if now is None else now)
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second, 0, 0])
        bucket = self._buckets[-1]
        bucket[1] += 1
        self.granted_total += 1
        if waited:
            bucket[2] += 1
            self.waited_total += 1

    def rates(self, now: float | None = None) -> tuple[float, float]:
        """(grants per second, waited grants per second) over the last WINDOW_SECONDS full
        seconds (the second under way is not over, so it is left out)."""
        second = int(time.monotonic() if now is None else now)
        granted = waited = 0
        for start, grants, waits in self._buckets:
            if second - WINDOW_SECONDS <= start < second:
                granted += grants
                waited += waits
        return granted / WINDOW_SECONDS, waited / WINDOW_SECONDS
