"""Who calls, from where, under which trace: the HTTP door's ASGI middleware.

Authentication is the gRPC side's own code path (security.credentials.Authenticator): the same
`x-api-key` and `authorization: Bearer <JWT>` headers resolve to the same owner and roles. Reads
(GET, and the POST routes that only search or read) need "reader" or "writer"; everything else
needs "writer". The caller's W3C trace context (traceparent) is current while its request runs,
so a run it starts continues its trace, as over gRPC.
"""

from __future__ import annotations

import logging
import re

from opentelemetry import context as otel_context
from opentelemetry import propagate
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stepstream.security.credentials import Authenticator, AuthError, Principal
from stepstream.server.api.auth import READER, WRITER
from stepstream.server.http.ui import is_ui_path

log = logging.getLogger(__name__)

# Paths anyone may call: probes, the server's description, and what the inspector page must
# know before it has credentials (whether it needs them).
OPEN_PATHS = frozenset({"/ok", "/info", "/health", "/metrics", "/inspector/config"})
# POST routes that only read.
READ_POSTS = re.compile(
    r"^/(threads/search|threads/count|assistants/search|assistants/count|store/items/search"
    r"|store/namespaces|threads/[^/]+/history|threads/[^/]+/state/checkpoint"
    r"|assistants/[^/]+/versions)$"
)
READ_ROLES = frozenset({READER, WRITER})
WRITE_ROLES = frozenset({WRITER})


async def _json_error(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]]) -> None:
    import orjson

    body = orjson.dumps({"detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class AuthMiddleware:
    """Puts the caller's Principal in scope["state"]["principal"], or answers 401/403."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator | None, anonymous: Principal) -> None:
        self.app = app
        self.authenticator = authenticator
        self.anonymous = anonymous

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        principal = self.anonymous
        public = path in OPEN_PATHS or is_ui_path(path)  # the inspector's shell; its data calls carry keys
        if self.authenticator is not None and not public and method != "OPTIONS":
            metadata = [(k, v) for k, v in headers.items() if k in ("x-api-key", "authorization")]
            try:
                principal = self.authenticator.authenticate(metadata)
            except AuthError as exc:
                await _json_error(send, 401, str(exc), [(b"www-authenticate", b"Bearer")])
                return
            reading = method in ("GET", "HEAD") or bool(READ_POSTS.match(path))
            needed = READ_ROLES if reading else WRITE_ROLES
            if not principal.has_any(needed):
                wanted = " or ".join(sorted(needed))
                await _json_error(
                    send,
                    403,
                    f"{method} {path} needs the role {wanted}; {principal.owner!r} has "
                    f"{', '.join(sorted(principal.roles)) or 'none'}",
                    [],
                )
                return
        scope.setdefault("state", {})["principal"] = principal
        token = None
        if "traceparent" in headers:
            token = otel_context.attach(propagate.extract(headers))
        try:
            await self.app(scope, receive, send)
        finally:
            if token is not None:
                otel_context.detach(token)


class InternalErrorMiddleware:
    """A handler's unexpected exception is a logged 500 with a JSON body, and the connection
    stays usable (the exception does not reach the server, which would drop the connection)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            log.exception("%s %s failed", scope["method"], scope["path"])
            if not started:
                await _json_error(send, 500, f"internal error: {type(exc).__name__}", [])


class ReplicaHeaderMiddleware:
    """Every answer names the replica that gave it (`x-stepstream-replica`), as the gRPC door's
    trailer does: behind a load balancer or with `--workers`, that is how one tells them apart."""

    def __init__(self, app: ASGIApp, replica: str) -> None:
        self.app = app
        self.header = (b"x-stepstream-replica", replica.encode("latin-1", "replace"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def named_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, named_send)
