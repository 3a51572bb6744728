"""Local Wikipedia-, arXiv- and LLM-shaped APIs with latency and per-endpoint rate limits.

Used by the research-assistant example, its tests, `make demo` and the bench, so
nothing calls the real services. Each endpoint enforces a requests limit and,
beside it, a tokens limit, each in any shape real APIs use (GCRA, sliding
window, fixed window), sends the rate-limit headers real APIs send, and counts
what it allowed and refused. Start it with `stepstream mockapi`, or from code:

    async with MockApiServer(MockApiConfig()) as api:   # in this event loop
        ...  api.url  ...
    with MockApiProcess(MockApiConfig()) as api:         # as a child process
        ...  await fetch_stats(api.url)  ...
"""

from __future__ import annotations

from stepstream.mockapi.app import create_app
from stepstream.mockapi.config import ARXIV, BUILTIN, LLM, WIKIPEDIA, MockApiConfig, load_file
from stepstream.mockapi.limits import Limit, Shape, Window, parse_shape
from stepstream.mockapi.runner import MockApiProcess, MockApiServer, fetch_stats, reset_stats

# The endpoints every mock serves, whatever its config.
ENDPOINTS = BUILTIN

__all__ = [
    "ARXIV",
    "ENDPOINTS",
    "LLM",
    "WIKIPEDIA",
    "Limit",
    "MockApiConfig",
    "MockApiProcess",
    "MockApiServer",
    "Shape",
    "Window",
    "create_app",
    "fetch_stats",
    "load_file",
    "parse_shape",
    "reset_stats",
]
