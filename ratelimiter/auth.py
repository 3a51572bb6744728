"""Who may call the rate-limiter sidecar: every method needs the "limiter" role.

Limits are shared by a whole deployment, not by tenant, so the sidecar has one
role; its callers are the graph servers (an API key, or the name of their
client certificate over mTLS) and Envoy proxies.
"""

from __future__ import annotations

import logging

from stepstream.ratelimiter import envoy
from stepstream.ratelimiter.config import ConfigError, LimiterSettings
from stepstream.security.credentials import Principal, build_authenticator
from stepstream.security.interceptor import AuthInterceptor
from stepstream.security.tls import is_loopback
from stepstream.v1 import ratelimit_pb2

log = logging.getLogger(__name__)

LIMITER = "limiter"


def roles_by_method() -> dict[str, frozenset[str]]:
    service = ratelimit_pb2.DESCRIPTOR.services_by_name["RateLimiterService"]
    table = {f"/{service.full_name}/{m.name}": frozenset({LIMITER}) for m in service.methods}
    table[f"/{envoy.SERVICE_NAME}/ShouldRateLimit"] = frozenset({LIMITER})
    return table


def auth_interceptor(settings: LimiterSettings) -> AuthInterceptor:
    """Raises ConfigError for a principals file or key set that cannot be used, or for an
    exposed host without authentication."""
    try:
        authenticator = build_authenticator(
            settings.auth_file or None,
            settings.jwt_keys_file or None,
            jwt_issuer=settings.jwt_issuer,
            jwt_audience=settings.jwt_audience,
        )
    except ValueError as exc:
        raise ConfigError(
            "<auth>", "auth_file" if settings.auth_file else "jwt_keys_file", str(exc)
        ) from None
    if authenticator is None:
        if not is_loopback(settings.host) and not settings.allow_unauthenticated:
            raise ConfigError(
                "<settings>",
                "auth_file",
                f"refusing to serve on {settings.host} without authentication: set auth_file "
                "or jwt_keys_file (or allow_unauthenticated)",
            )
        log.warning("AUTHENTICATION IS OFF: every caller may take tokens")
    return AuthInterceptor(
        authenticator, roles_by_method(), Principal("local", frozenset({LIMITER}), "anonymous")
    )
