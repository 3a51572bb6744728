"""Who may call the graph server: the roles each method needs, and the interceptor that checks them.

Roles: "reader" may read graphs, sessions, state, runs and events; "writer" may
also create, start, steer, cancel and delete. Either way a caller only ever
sees what its owner (tenant) owns: the core scopes every query by owner.
"""

from __future__ import annotations

import logging

import grpc

from stepstream.security.credentials import Authenticator, Principal, build_authenticator
from stepstream.security.interceptor import AuthInterceptor
from stepstream.security.tls import is_loopback, server_credentials, sidecar_credentials
from stepstream.server.settings import ServerSettings
from stepstream.v1 import assistants_pb2, graphs_pb2, inspector_pb2, runs_pb2, sessions_pb2, store_pb2

log = logging.getLogger(__name__)

READER = "reader"
WRITER = "writer"
_READS = {
    "GraphService": {"ListGraphs", "GetGraph"},
    "SessionService": {"GetSession", "ListSessions", "GetSessionState", "GetSessionHistory"},
    "RunService": {"JoinRun", "GetRun", "ListRuns", "WaitRun"},
    "StoreService": {"GetItem", "SearchItems", "ListNamespaces"},
    "AssistantService": {"GetAssistant", "ListAssistantVersions", "SearchAssistants"},
    "InspectorService": {"GetOverview", "WatchOverview", "GetRunTimeline", "GetRunTrace", "ListLimitStates"},
}


def roles_by_method() -> dict[str, frozenset[str]]:
    """Every method of the services: reads need reader or writer, the rest writer."""
    table: dict[str, frozenset[str]] = {}
    for module in (graphs_pb2, sessions_pb2, runs_pb2, store_pb2, assistants_pb2, inspector_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                read = method.name in _READS.get(service.name, set())
                table[f"/{service.full_name}/{method.name}"] = (
                    frozenset({READER, WRITER}) if read else frozenset({WRITER})
                )
    return table


class AuthConfigError(ValueError):
    pass


def authenticator_for(settings: ServerSettings) -> Authenticator | None:
    authenticator = build_authenticator(
        settings.auth_file,
        settings.jwt_keys_file,
        jwt_issuer=settings.jwt_issuer,
        jwt_audience=settings.jwt_audience,
        jwt_owner_claim=settings.jwt_owner_claim,
        jwt_roles_claim=settings.jwt_roles_claim,
    )
    if authenticator is None and not is_loopback(settings.host) and not settings.allow_unauthenticated:
        raise AuthConfigError(
            f"refusing to serve on {settings.host} without authentication: give --auth-file "
            "or --jwt-keys (or --allow-unauthenticated to accept anyone as one owner)"
        )
    return authenticator


def anonymous(settings: ServerSettings) -> Principal:
    return Principal(settings.default_owner, frozenset({READER, WRITER}), "anonymous")


def auth_interceptor(settings: ServerSettings) -> AuthInterceptor:
    authenticator = authenticator_for(settings)
    if authenticator is None:
        log.warning(
            "AUTHENTICATION IS OFF: every caller acts as owner %r with every role", settings.default_owner
        )
    return AuthInterceptor(authenticator, roles_by_method(), anonymous(settings))


def check_security(settings: ServerSettings) -> None:
    """Refuse at start what could not be served safely: unreadable keys or certificates, an
    exposed host without authentication, a remote sidecar without TLS. Raises ValueError."""
    authenticator_for(settings)
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        raise AuthConfigError("a TLS certificate needs its key (--tls-cert with --tls-key)")
    if settings.tls_cert_file and settings.tls_key_file:
        server_credentials(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file)
    if settings.tls_client_ca_file and not settings.tls_cert_file:
        raise AuthConfigError("client certificates (--tls-client-ca) need TLS (--tls-cert, --tls-key)")
    ratelimiter_credentials(settings)


def ratelimiter_credentials(settings: ServerSettings) -> grpc.ChannelCredentials | None:
    return sidecar_credentials(
        settings.ratelimiter_address,
        settings.ratelimiter_tls_ca_file,
        settings.ratelimiter_tls_cert_file,
        settings.ratelimiter_tls_key_file,
        allow_plaintext_remote=settings.allow_unauthenticated,
    )
