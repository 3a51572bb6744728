"""A grpc.aio server interceptor: every call is authenticated and authorised before its handler.

The interceptor wraps each method's handler, so the check runs inside the
call (where the metadata and the verified peer certificate are at hand) and the
principal is put in a context variable the servicers read (`current_principal`).
Methods listed as open (health, reflection) skip the check; a method missing
from the table needs a role nobody has: denied by default.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc

from stepstream.security.credentials import Authenticator, AuthError, Principal
from stepstream.security.handlers import Context, with_check

log = logging.getLogger(__name__)

# Prefixes of methods anyone may call: probes and tooling need them before any credentials.
OPEN_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)

current_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "current_principal", default=None
)


def peer_common_names(context: Context) -> list[str]:
    """Common names of the client certificate the TLS handshake verified (mTLS), if any."""
    auth = context.auth_context()
    return [v.decode() for v in auth.get("x509_common_name", [])]


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """authenticator None: authentication is off and every call acts as `anonymous`."""

    def __init__(
        self,
        authenticator: Authenticator | None,
        roles_by_method: Mapping[str, frozenset[str]],
        anonymous: Principal,
        open_prefixes: tuple[str, ...] = OPEN_PREFIXES,
    ) -> None:
        self._authenticator = authenticator
        self._roles = roles_by_method
        self._anonymous = anonymous
        self._open = open_prefixes

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method: str = details.method  # type: ignore[attr-defined]
        if handler is None or method.startswith(self._open):
            return handler
        check = self._checker(method)

        async def run_as_principal(_request: Any, context: Context) -> None:
            current_principal.set(await check(context))

        return with_check(handler, run_as_principal)

    def _checker(self, method: str) -> Callable[[Context], Awaitable[Principal]]:
        needed = self._roles.get(method, frozenset())

        async def check(context: Context) -> Principal:
            if self._authenticator is None:
                return self._anonymous
            try:
                principal = self._authenticator.authenticate(
                    context.invocation_metadata() or (), peer_common_names(context)
                )
            except AuthError as exc:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
                raise AssertionError("abort returns only by raising") from exc
            if not principal.has_any(needed):
                wanted = " or ".join(sorted(needed)) or "a role this method does not grant"
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"{method} needs the role {wanted}; {principal.owner!r} has "
                    f"{', '.join(sorted(principal.roles)) or 'none'}",
                )
            return principal

        return check


def principal_of(default: Principal) -> Principal:
    """The principal of the current call (set by the interceptor), or `default` outside one."""
    return current_principal.get() or default
