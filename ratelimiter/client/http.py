"""An httpx transport that takes a token before each request and reports 429s.

    client = httpx.AsyncClient(transport=RateLimitedTransport("arxiv", limiter))

A 429 answer pauses the key for every caller sharing the budget, for the
Retry-After it carried (seconds or an HTTP date), and the request is sent
again once its next slot comes (up to `retries_on_429` times).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable

import httpx

from stepstream.ratelimiter.client.base import Limiter
from stepstream.ratelimiter.client.context import current_limiter
from stepstream.ratelimiter.types import Priority


def retry_after_seconds(value: str | None) -> float:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; 0 when absent or bad."""
    if not value:
        return 0.0
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    return max(when.timestamp() - time.time(), 0.0)


class RateLimitedTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        key: str | Callable[[httpx.Request], str | None],
        limiter: Limiter | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float | None = None,
        priority: Priority = Priority.NORMAL,
        retries_on_429: int = 2,
    ) -> None:
        # `key` may pick the limit per request (None: not limited).
        self._key = key
        self._limiter = limiter
        self._inner = transport or httpx.AsyncHTTPTransport()
        self._timeout = timeout
        self._priority = priority
        self._retries = retries_on_429
        self.throttled = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        key = self._key(request) if callable(self._key) else self._key
        if key is None:
            return await self._inner.handle_async_request(request)
        limiter = self._limiter or current_limiter()
        attempt = 0
        while True:
            await limiter.acquire(key, 1, self._timeout, self._priority)
            response = await self._inner.handle_async_request(request)
            if response.status_code != 429:
                return response
            self.throttled += 1
            await limiter.report_throttled(key, retry_after_seconds(response.headers.get("retry-after")))
            if attempt >= self._retries:
                return response
            attempt += 1
            await response.aclose()

    async def aclose(self) -> None:
        await self._inner.aclose()
