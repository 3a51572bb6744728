"""stepstream's rate limiter: one token budget per external API, shared by every replica.

For graph code and the server, the interface is `Limiter` (see `client`):

    limiter = open_limiter(sidecar_address, settings)   # sidecar, or in-process when None
    async with limiter.acquire("arxiv", cost=1, timeout=30):
        ...call the API...

`@rate_limited("arxiv")` does the same for a node function, taking the run's
limiter installed by `use_limiter(limiter)`; `RateLimitedTransport` wraps httpx
and reports 429s; `LangChainRateLimiter` plugs into any chat model.

Layers: `config` (settings, strict loading) → `gcra` (the exact algorithm) →
`backends` (memory, Redis with one Lua script per decision, failover) → `core`
(fair lines, priorities, deadlines, leases, 429 pauses, reconcile) →
`servicer` / `envoy` (gRPC only) → `server` and `cli` (`stepstream ratelimiter`).
"""

from __future__ import annotations

from stepstream.ratelimiter.client import (
    Grant,
    Limiter,
    LimiterRequestError,
    LimiterUnavailable,
    LocalLimiter,
    RateLimitRefused,
    RemoteLimiter,
    current_limiter,
    open_limiter,
    rate_limited,
    use_limiter,
)
from stepstream.ratelimiter.types import Priority

__all__ = [
    "Grant",
    "Limiter",
    "LimiterRequestError",
    "LimiterUnavailable",
    "LocalLimiter",
    "Priority",
    "RateLimitRefused",
    "RemoteLimiter",
    "current_limiter",
    "open_limiter",
    "rate_limited",
    "use_limiter",
]
