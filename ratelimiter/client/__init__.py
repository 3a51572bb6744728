"""Ways for graph nodes and HTTP calls to take tokens: one interface, two limiters.

- `RemoteLimiter`: the sidecar over gRPC (one shared budget for every replica).
- `LocalLimiter`: the same core in-process (the single-machine default).

Both give `async with limiter.acquire("arxiv", cost=1, timeout=5): ...`; the
helpers (`rate_limited`, `RateLimitedTransport`, `LangChainRateLimiter`) work
with either, or with the limiter installed for the current run by `use_limiter`.
"""

from __future__ import annotations

from stepstream.ratelimiter.client.base import (
    Acquisition,
    Grant,
    Limiter,
    LimiterRequestError,
    LimiterUnavailable,
    RateLimitRefused,
)
from stepstream.ratelimiter.client.context import current_limiter, rate_limited, use_limiter
from stepstream.ratelimiter.client.local import LocalLimiter
from stepstream.ratelimiter.client.remote import RemoteLimiter, open_limiter

__all__ = [
    "Acquisition",
    "Grant",
    "Limiter",
    "LimiterRequestError",
    "LimiterUnavailable",
    "LocalLimiter",
    "RateLimitRefused",
    "RemoteLimiter",
    "current_limiter",
    "open_limiter",
    "rate_limited",
    "use_limiter",
]
