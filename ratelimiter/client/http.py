"""An httpx transport that takes a token before each request and learns from the answers.

    client = httpx.AsyncClient(transport=RateLimitedTransport("arxiv", limiter))
    llm = httpx.AsyncClient(transport=RateLimitedTransport(ApiKeys("openai-rpm", "openai-tpm"), ...))

Every answer's rate-limit headers go to the shared budget (`headers.learn_from_response`):
a 429 pauses the key for every caller sharing it, for the Retry-After it carried,
and the request is sent again once its next slot comes (up to `retries_on_429`
times); a remaining count below what the budget thinks is consumed from it for
every replica.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from stepstream.ratelimiter.client.base import Limiter
from stepstream.ratelimiter.client.context import current_limiter
from stepstream.ratelimiter.client.headers import ApiKeys, learn_from_response
from stepstream.ratelimiter.client.headers import retry_after_seconds as _retry_after
from stepstream.ratelimiter.types import Priority


def retry_after_seconds(value: str | None) -> float:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; 0 when absent or bad."""
    return _retry_after(value) or 0.0


class RateLimitedTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        key: str | ApiKeys | Callable[[httpx.Request], str | ApiKeys | None],
        limiter: Limiter | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float | None = None,
        priority: Priority = Priority.NORMAL,
        retries_on_429: int = 2,
        learn: bool = True,
    ) -> None:
        # `key` may pick the limit per request (None: not limited). With ApiKeys each
        # request takes one request of `requests`; tokens are settled by the caller.
        self._key = key
        self._limiter = limiter
        self._inner = transport or httpx.AsyncHTTPTransport()
        self._timeout = timeout
        self._priority = priority
        self._retries = retries_on_429
        # Read the answers' rate-limit headers into the shared budget.
        self._learn = learn
        self.throttled = 0
        self.consumed = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        chosen = self._key(request) if callable(self._key) else self._key
        if chosen is None:
            return await self._inner.handle_async_request(request)
        keys = ApiKeys(chosen) if isinstance(chosen, str) else chosen
        limiter = self._limiter or current_limiter()
        attempt = 0
        while True:
            if keys.requests is not None:
                await limiter.acquire(keys.requests, 1, self._timeout, self._priority)
            response = await self._inner.handle_async_request(request)
            if self._learn:
                learned = await learn_from_response(limiter, keys, response.status_code, response.headers)
                self.consumed += sum(learned.consumed.values())
            elif response.status_code == 429 and (keys.requests or keys.tokens):
                wait = retry_after_seconds(response.headers.get("retry-after"))
                await limiter.report_throttled(keys.requests or keys.tokens or "", wait)
            if response.status_code != 429:
                return response
            self.throttled += 1
            if attempt >= self._retries:
                return response
            attempt += 1
            await response.aclose()

    async def aclose(self) -> None:
        await self._inner.aclose()
