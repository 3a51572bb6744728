"""uvicorn inside the server's own event loop: a second listener beside grpc.aio.

grpc.aio cannot share its port with HTTP/1.1, so the HTTP API has its own port. uvicorn's
`Server.serve()` runs as a task of the loop the core lives in (one core, one loop); its signal
capture is switched off so that stepstream's SIGTERM drain stays in charge. The socket is bound
here, with SO_REUSEPORT when the server runs as one of `serve --workers` (each worker then
serves the HTTP port too, as it does the gRPC one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn

from stepstream.server.core.app import Core
from stepstream.server.http.app import build_app

log = logging.getLogger(__name__)

# Seconds open connections (SSE streams) get to finish once the door stops.
STOP_GRACE_SECONDS = 1


class _InLoopServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The process's own handlers (server/api/server.py serve()) drain runs on SIGTERM.
        yield


def bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen for HTTP on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class HttpDoor:
    def __init__(self, core: Core) -> None:
        self.core = core
        settings = core.settings
        self.socket = bind(settings.host, settings.http_port or 0, settings.reuse_port)
        self.port: int = self.socket.getsockname()[1]
        config = uvicorn.Config(
            build_app(core),
            lifespan="off",
            log_level=logging.WARNING,
            access_log=False,
            timeout_graceful_shutdown=STOP_GRACE_SECONDS,
            # Forwarded headers are not trusted: the principal comes from credentials only.
            proxy_headers=False,
        )
        self.server = _InLoopServer(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        self._task = asyncio.create_task(self.server.serve(sockets=[self.socket]), name="http-door")
        while not self.server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("the HTTP listener stopped before it started")
            await asyncio.sleep(0.01)
        return self.port

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
