"""An HTTP proxy that delays each request by a random time before passing it on.

Between a limiter's grant and the API's counter lies a network: requests granted
in order reach the API late and out of order. The proxy plays that network in
front of any HTTP API (the mock, or another), on the running event loop:

    async with JitterProxy(api.url, delay_ms=(0, 50)) as proxy:
        ...  httpx.get(f"{proxy.url}/wikipedia/w/api.php", ...)  ...

Method, path, query, body and headers go through unchanged, and the answer
(status, headers such as Retry-After and X-RateLimit-*, body) comes back unchanged.
"""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Self

import aiohttp
from aiohttp import web

# Hop-by-hop headers (RFC 9110 §7.6.1) and those aiohttp recomputes for the new message.
_DROP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}
)


class JitterProxy:
    def __init__(
        self,
        target: str,
        delay_ms: tuple[float, float] = (0.0, 50.0),
        seed: int | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        low, high = delay_ms
        if low < 0 or high < low:
            raise ValueError(f"delay_ms: need 0 <= MIN <= MAX, got {low}-{high}")
        self.target = target.rstrip("/")
        self.delay_ms = delay_ms
        self.host = host
        self.port = 0
        self.forwarded = 0
        self._rng = random.Random(seed)
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        await asyncio.sleep(self._rng.uniform(*self.delay_ms) / 1000)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP}
        body = await request.read()
        async with self._session.request(
            request.method, f"{self.target}{request.rel_url}", headers=headers, data=body or None
        ) as upstream:
            content = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in _DROP | {"content-encoding"}}
            self.forwarded += 1
            return web.Response(status=upstream.status, headers=out, body=content)

    async def start(self) -> Self:
        # No pool limit: the proxy must not queue requests the API would have seen at once.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=60),
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
