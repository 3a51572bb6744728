"""Local Wikipedia- and arXiv-shaped search APIs with latency and per-endpoint rate limits.

Used by the research-assistant example, its tests and `make demo`, so nothing
calls the real services. Start it with `stepstream mockapi`, or from code:

    async with MockApiServer(MockApiConfig()) as api:   # in this event loop
        ...  api.url  ...
    with MockApiProcess(MockApiConfig()) as api:         # as a child process
        ...  await fetch_stats(api.url)  ...
"""

from __future__ import annotations

from stepstream.mockapi.app import ARXIV, ENDPOINTS, WIKIPEDIA, Limit, MockApiConfig, create_app
from stepstream.mockapi.runner import MockApiProcess, MockApiServer, fetch_stats, reset_stats

__all__ = [
    "ARXIV",
    "ENDPOINTS",
    "WIKIPEDIA",
    "Limit",
    "MockApiConfig",
    "MockApiProcess",
    "MockApiServer",
    "create_app",
    "fetch_stats",
    "reset_stats",
]
