"""Assemble and run the sidecar: core + back end, the servicer, health and reflection."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
from collections.abc import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from stepstream.ratelimiter import envoy
from stepstream.ratelimiter.auth import auth_interceptor
from stepstream.ratelimiter.backends.base import Backend
from stepstream.ratelimiter.backends.failover import FailoverBackend
from stepstream.ratelimiter.backends.memory import MemoryBackend
from stepstream.ratelimiter.backends.redis_backend import RedisBackend
from stepstream.ratelimiter.config import LimiterSettings
from stepstream.ratelimiter.core import LimiterCore
from stepstream.ratelimiter.servicer import RateLimiterServicer
from stepstream.security.malformed import MalformedRequestInterceptor
from stepstream.security.tls import server_credentials
from stepstream.server.api.reflection import enable_reflection
from stepstream.telemetry import configure_from_env, current
from stepstream.telemetry.propagation import server_interceptors
from stepstream.v1 import ratelimit_pb2, ratelimit_pb2_grpc

log = logging.getLogger(__name__)
SERVICE_NAME = ratelimit_pb2.DESCRIPTOR.services_by_name["RateLimiterService"].full_name


def build_backend(settings: LimiterSettings, on_change: Callable[[bool], None] | None = None) -> Backend:
    """Memory when no Redis is configured; Redis behind the configured failure mode otherwise."""
    if not settings.redis_url:
        return MemoryBackend()
    store = RedisBackend(settings.redis_url, settings.key_prefix, settings.store_timeout_ms / 1000)
    return FailoverBackend(
        store,
        settings.on_store_failure,
        settings.expected_replicas,
        timeout_s=settings.store_timeout_ms / 1000,
        retry_s=settings.store_retry_ms / 1000,
        on_change=on_change,
        horizon_s=settings.reserve_ahead_ms / 1000,
    )


@dataclasses.dataclass
class RunningLimiter:
    server: grpc.aio.Server
    core: LimiterCore
    port: int

    async def stop(self, grace_s: float = 1.0) -> None:
        await self.server.stop(grace_s)
        await self.core.close()


async def start(settings: LimiterSettings) -> RunningLimiter:
    """Listen on settings.host:settings.port (0: any free port) and serve."""
    interceptor = auth_interceptor(settings)
    server = grpc.aio.server(
        # Callers' trace contexts become current for their calls (each acquire gets its span: servicer.py).
        interceptors=[*server_interceptors(current()), interceptor, MalformedRequestInterceptor()],
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", settings.max_message_bytes),
        ],
    )
    health_servicer = health.aio.HealthServicer()
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    def on_store_change(up: bool) -> None:
        # Failing closed without the store, the service cannot grant: say so to probes.
        if settings.on_store_failure == "closed":
            status = (
                health_pb2.HealthCheckResponse.SERVING if up else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            task = loop.create_task(health_servicer.set(SERVICE_NAME, status))
            pending.add(task)
            task.add_done_callback(pending.discard)

    core = LimiterCore(settings, build_backend(settings, on_store_change))
    ratelimit_pb2_grpc.add_RateLimiterServiceServicer_to_server(RateLimiterServicer(core), server)
    envoy.add_to_server(core, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (SERVICE_NAME, envoy.SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
    enable_reflection(names, server)
    address = f"{settings.host}:{settings.port}"
    if settings.tls_cert_file:
        credentials = server_credentials(
            settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file or None
        )
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    await server.start()
    for name in ("", SERVICE_NAME, envoy.SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "rate limiter listening on %s:%d (%s)",
        settings.host,
        port,
        "redis" if settings.redis_url else "memory",
    )
    return RunningLimiter(server, core, port)


async def serve(settings: LimiterSettings, ready: Callable[[int], None] | None = None) -> None:
    """Run until SIGINT or SIGTERM."""
    telemetry = configure_from_env("stepstream-ratelimiter", f"{socket.gethostname()}-{os.getpid()}")
    running = await start(settings)
    if ready:
        ready(running.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await running.stop()
    telemetry.shutdown()


def run(settings: LimiterSettings, ready: Callable[[int], None] | None = None) -> None:
    """Serve on uvloop when installed (20-30 % more grants per second), asyncio otherwise."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(settings, ready))
    else:
        uvloop.run(serve(settings, ready))
