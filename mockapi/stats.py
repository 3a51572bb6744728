"""What each mock endpoint allowed and refused, and the share of its allowed rate that was used.

The share is measured against the most the endpoint's own limit could have
admitted in the same span (`Shape.most_in`), so it is exact for every shape and
never above 1: a share near 1 over a long span means the callers used the whole
budget, and any 429 in the same stats means they overran it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from stepstream.mockapi.limits import Limit, Shape

# The busiest-window share is measured over this many seconds unless the caller asks otherwise.
DEFAULT_SHARE_WINDOW_S = 10.0


@dataclass
class EndpointStats:
    requests: int = 0  # every request that reached the endpoint (after any arrival jitter)
    served: int = 0  # answered 200
    rate_limited: int = 0  # refused with 429
    refused_by: dict[str, int] = field(default_factory=lambda: {"requests": 0, "tokens": 0})
    too_large: int = 0  # refused with 413: more tokens than the limit ever allows at once
    tokens_admitted: int = 0
    # Budget spent through POST /spend, i.e. by a consumer other than the one measured.
    others_requests: int = 0
    others_tokens: int = 0
    # When each admitted request arrived (seconds since start) and the tokens it used.
    admitted_at: list[float] = field(default_factory=list, repr=False)
    admitted_tokens: list[int] = field(default_factory=list, repr=False)

    def admit(self, at: float, tokens: int) -> None:
        self.admitted_at.append(at)
        self.admitted_tokens.append(tokens)
        self.tokens_admitted += tokens

    def peak_rate(self, window_s: float = 5.0) -> float | None:
        """Requests admitted per second in the busiest `window_s` seconds."""
        best = busiest(self.admitted_at, [1] * len(self.admitted_at), window_s)
        return None if best is None else best / window_s

    def admitted_per_second(self) -> list[int]:
        """Requests admitted in each whole second since the API started."""
        counts = [0] * (int(self.admitted_at[-1]) + 1 if self.admitted_at else 0)
        for t in self.admitted_at:
            counts[int(t)] += 1
        return counts

    def share(self, shape: Shape, costs: list[int], window_s: float) -> dict[str, Any]:
        """How much of `shape`'s budget the admissions (with `costs`) used."""
        times = self.admitted_at
        report: dict[str, Any] = {
            "share_used": None,
            "busy_s": 0.0,
            "admitted_in_busy": sum(costs),
            "allowed_in_busy": None,
            "share_busiest": None,
            "share_window_s": window_s,
        }
        if shape.unlimited or not times:
            return report
        busy = times[-1] - times[0]
        # The busy span is closed at both ends: a hair longer as a half-open one.
        allowed = shape.most_in(busy + 1e-6)
        report.update(
            busy_s=round(busy, 3), allowed_in_busy=allowed, share_used=round(sum(costs) / allowed, 4)
        )
        best = busiest(times, costs, window_s)
        if best is not None:
            report["share_busiest"] = round(best / shape.most_in(window_s), 4)
        return report


def busiest(times: list[float], costs: list[int], window_s: float) -> int | None:
    """The largest total cost in any [t, t + window_s) starting at an admission; None if the
    admissions span less than the window (a short burst says nothing about a sustained rate)."""
    if not times or times[-1] - times[0] < window_s:
        return None
    prefix = [0]
    for cost in costs:
        prefix.append(prefix[-1] + cost)
    best = 0
    for start, t in enumerate(times):
        end = bisect.bisect_left(times, t + window_s, lo=start)
        best = max(best, prefix[end] - prefix[start])
    return best


def describe(shape: Shape) -> dict[str, Any]:
    """The limit as the stats show it: its spec string and its parts."""
    if isinstance(shape, Limit):
        return {
            "spec": shape.spec(),
            "shape": "unlimited" if shape.unlimited else "gcra",
            "burst": shape.burst,
        }
    return {
        "spec": shape.spec(),
        "shape": shape.shape,
        "limit": shape.limit,
        "window_s": shape.window_s,
        "offset_s": shape.offset_s,
    }
