"""The grpc.aio server of one replica: servicers, health, reflection, graceful stop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import signal
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from stepstream.security.malformed import MalformedRequestInterceptor
from stepstream.security.tls import server_credentials
from stepstream.server.api.assistants import AssistantServicer
from stepstream.server.api.auth import auth_interceptor
from stepstream.server.api.inspector import InspectorServicer
from stepstream.server.api.limits import RequestLimits, RequestLimitsInterceptor
from stepstream.server.api.reflection import enable_reflection
from stepstream.server.api.schedules import SCHEDULE_SERVICE_NAMES, add_schedule_servicers
from stepstream.server.api.servicers import GraphServicer, RunServicer, SessionServicer
from stepstream.server.api.store_service import StoreServicer
from stepstream.server.core.app import Core
from stepstream.server.settings import ServerSettings
from stepstream.telemetry import configure_from_env, current
from stepstream.telemetry.propagation import server_interceptors
from stepstream.v1 import (
    assistants_pb2,
    assistants_pb2_grpc,
    graphs_pb2,
    graphs_pb2_grpc,
    inspector_pb2,
    inspector_pb2_grpc,
    runs_pb2,
    runs_pb2_grpc,
    sessions_pb2,
    sessions_pb2_grpc,
    store_pb2,
    store_pb2_grpc,
)

log = logging.getLogger(__name__)

# Allocations between young-generation collections, then young and middle passes per older one.
GC_THRESHOLDS = (10_000, 20, 100)

SERVICE_NAMES = (
    graphs_pb2.DESCRIPTOR.services_by_name["GraphService"].full_name,
    sessions_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name,
    runs_pb2.DESCRIPTOR.services_by_name["RunService"].full_name,
    store_pb2.DESCRIPTOR.services_by_name["StoreService"].full_name,
    assistants_pb2.DESCRIPTOR.services_by_name["AssistantService"].full_name,
    inspector_pb2.DESCRIPTOR.services_by_name["InspectorService"].full_name,
    *SCHEDULE_SERVICE_NAMES,
)


def connection_age_options(seconds: float | None) -> list[tuple[str, int]]:
    """gRPC's max connection age (it adds ±10% jitter); no grace limit, so no call is ever cut."""
    if not seconds:
        return []
    return [("grpc.max_connection_age_ms", max(1, int(seconds * 1000)))]


class StepstreamServer:
    def __init__(self, settings: ServerSettings, core: Core | None = None) -> None:
        self.settings = settings
        self.core = core or Core(settings)
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self.server: grpc.aio.Server | None = None
        self.port = 0
        # Built before anything starts, so a bad auth set-up stops the process at once.
        self.interceptors = [
            auth_interceptor(settings),
            MalformedRequestInterceptor(),
            RequestLimitsInterceptor(RequestLimits.of(settings)),
        ]

    async def start(self) -> int:
        # Sync graph nodes run here, never on the event loop.
        loop = asyncio.get_running_loop()
        loop.set_default_executor(
            concurrent.futures.ThreadPoolExecutor(self.settings.sync_node_threads, thread_name_prefix="node")
        )
        await self.core.start()
        # Graphs, modules and settings live as long as the process: keep them out of the
        # collector's full passes, and collect young objects less often (fewer, shorter pauses).
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        limit = self.settings.max_message_bytes
        server = grpc.aio.server(
            # The caller's trace context (W3C traceparent) is current for its call, when tracing is on.
            interceptors=[*server_interceptors(current()), *self.interceptors],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", int(self.settings.reuse_port)),
                *connection_age_options(self.settings.max_connection_age_seconds),
            ],
        )
        graphs_pb2_grpc.add_GraphServiceServicer_to_server(GraphServicer(self.core), server)
        sessions_pb2_grpc.add_SessionServiceServicer_to_server(SessionServicer(self.core), server)
        runs_pb2_grpc.add_RunServiceServicer_to_server(RunServicer(self.core), server)
        store_pb2_grpc.add_StoreServiceServicer_to_server(StoreServicer(self.core), server)
        assistants_pb2_grpc.add_AssistantServiceServicer_to_server(AssistantServicer(self.core), server)
        inspector_pb2_grpc.add_InspectorServiceServicer_to_server(InspectorServicer(self.core), server)
        add_schedule_servicers(self.core, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        enable_reflection((*SERVICE_NAMES, health.SERVICE_NAME), server)
        address = f"{self.settings.host}:{self.settings.port}"
        if self.settings.tls_cert_file and self.settings.tls_key_file:
            credentials = server_credentials(
                self.settings.tls_cert_file, self.settings.tls_key_file, self.settings.tls_client_ca_file
            )
            self.port = server.add_secure_port(address, credentials)
        else:
            self.port = server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.settings.host}:{self.settings.port}")
        await server.start()
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.server = server
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Drain: report NOT_SERVING, let runs reach a superstep boundary, hand back the rest."""
        await self.health.enter_graceful_shutdown()
        await self.core.stop(grace)
        if self.server is not None:
            await self.server.stop(1.0)


def _print(banner: str) -> None:
    print(banner, flush=True)


async def serve(settings: ServerSettings, announce: Callable[[str], None] = _print) -> None:
    # Before the core is built: it takes its tracer and meters from what this sets up.
    telemetry = configure_from_env("stepstream", settings.replica)
    server = StepstreamServer(settings)
    port = await server.start()
    # LangGraph's HTTP API on a second port, from the same core (server/http).
    http_door = None
    if settings.http_port:
        from stepstream.server.http.door import HttpDoor

        http_door = HttpDoor(server.core)
        http_port = await http_door.start()
        print(f"stepstream HTTP API on http://{settings.host}:{http_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    graphs = ", ".join(g.spec.graph_id for g in server.core.graphs()) or "no graphs"
    security = [
        "TLS" if settings.tls_cert_file else "plaintext",
        "auth on" if settings.auth_file or settings.jwt_keys_file else "AUTHENTICATION OFF",
    ]
    announce(
        f"stepstream serving {graphs} on {settings.host}:{port} (db {settings.db_url}; {', '.join(security)})"
    )
    await stop.wait()
    log.info("stopping: draining runs for up to %.0f s", settings.shutdown_grace_seconds)
    await server.stop()
    if http_door is not None:
        await http_door.stop()
    telemetry.shutdown()


def run_forever(settings: ServerSettings, announce: Callable[[str], None] = _print) -> None:
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(serve(settings, announce))
