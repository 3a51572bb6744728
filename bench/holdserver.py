"""The slow I/O the soak's runs wait on: an HTTP server that answers only when told to.

GET /hold is held open until POST /release; GET /stats tells how many requests
are held now and at most, so the benchmark knows (rather than assumes) that
every run was in flight at once. POST /reset starts over.

`python -m bench.holdserver` prints "hold listening on http://HOST:PORT".
"""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web

READY_PREFIX = "hold listening on "


class Hold:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.released = asyncio.Event()
        self.open = self.peak_open = self.answered = 0

    async def hold(self, request: web.Request) -> web.Response:
        self.open += 1
        self.peak_open = max(self.peak_open, self.open)
        try:
            await self.released.wait()
        finally:
            self.open -= 1
        self.answered += 1
        return web.Response(text="released")

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"open": self.open, "peak_open": self.peak_open, "answered": self.answered})

    async def release(self, request: web.Request) -> web.Response:
        self.released.set()
        return await self.stats(request)

    async def reset_view(self, request: web.Request) -> web.Response:
        self.released.set()  # never strand a request of an earlier round
        self.reset()
        return await self.stats(request)


async def serve() -> None:
    hold = Hold()
    app = web.Application()
    app.add_routes(
        [
            web.get("/hold", hold.hold),
            web.get("/stats", hold.stats),
            web.post("/release", hold.release),
            web.post("/reset", hold.reset_view),
        ]
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    # A deep backlog: ten thousand runs connect within seconds.
    await web.SockSite(runner, sock, backlog=16384).start()
    print(f"{READY_PREFIX}http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve())
