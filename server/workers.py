"""`stepstream serve --workers N`: N server processes sharing one port and one database.

A Python process executes on one core at a time, so one server process cannot
use a machine's other cores however many runs it holds. Workers can: each is a
full replica (own name, own event loop, own leases) and they listen on one port
with SO_REUSEPORT, so the kernel spreads incoming connections over them. One
client connection (HTTP/2) stays on one worker; a client with several
connections (the Python SDK's `connections=`) or several clients use them all.
Sessions, runs and events live in the database, so any worker serves any of
them, exactly as between replicas.

With a limits file and more than one worker, one rate-limiter sidecar is started
for all of them: each worker holding its own in-process budget would let N times
the allowed rate through.

The supervisor restarts a worker that dies after it was serving (under the same
name, so its unfinished runs are handed back at once), and stops everything if a
worker fails before it serves (a bad config, a port in use): that is not
something a restart mends.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.process
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from stepstream.cli.settings import env_var
from stepstream.server.settings import PER_PROCESS, WORKER_CONNECTION_AGE_SECONDS, ServerSettings

if TYPE_CHECKING:
    from stepstream.server.process import LimiterProcess

log = logging.getLogger(__name__)

# Seconds between restarts of a worker that keeps dying, so a crash loop does not spin.
RESTART_BACKOFF_SECONDS = 1.0
# Seconds the workers get to start serving.
START_TIMEOUT_SECONDS = 120.0


class WorkerFailed(RuntimeError):
    """A worker exited before it was serving."""


def worker_settings(settings: ServerSettings, index: int, port: int, limiter: str | None) -> ServerSettings:
    """What worker `index` (from 1) runs with: its own replica name, the shared port and limiter."""
    changes: dict[str, Any] = {
        "replica": f"{settings.replica}-w{index}",
        "port": port,
        "reuse_port": True,
        "workers": 1,
        "migrate_on_start": False,
    }
    if settings.max_connection_age_seconds is None:
        changes["max_connection_age_seconds"] = WORKER_CONNECTION_AGE_SECONDS
    if limiter is not None:
        changes.update(ratelimiter_address=limiter, limits_path=None)
        # Falling back to a local budget divides each limit among the processes sharing it.
        expected = max(settings.ratelimiter_expected_replicas, settings.workers)
        changes["ratelimiter_expected_replicas"] = expected
    return settings.model_copy(update=changes)


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this worker when the supervisor dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _worker_main(settings: ServerSettings, ready: Any, log_level: str) -> None:
    """The body of one worker process: serve until SIGTERM, telling the supervisor when ready."""
    from stepstream.server.api.server import run_forever

    _die_with_parent()
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_forever(settings, announce=ready.send)


@contextlib.contextmanager
def _own_environment(settings: ServerSettings) -> Iterator[None]:
    """The supervisor's environment with `settings`' replica name and port while a worker is
    spawned: the worker starts with a copy of it, so nothing in it (a graph, a library, a
    process it starts) reads the supervisor's STEPSTREAM_REPLICA or STEPSTREAM_PORT."""
    own = {env_var(ServerSettings, name): str(getattr(settings, name)) for name in PER_PROCESS}
    saved = {name: os.environ.get(name) for name in own}
    os.environ.update(own)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _reserve_port(host: str, port: int) -> socket.socket:
    """Check the port is free (no other server holds it) and keep it for the workers.

    The kept socket is bound with SO_REUSEPORT but never listens, so it takes no
    connections; it resolves port 0 and holds the port while workers restart.
    """
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    bind_host = host.strip("[]")
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.bind((bind_host, port))
        port = probe.getsockname()[1]
    except OSError as exc:
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    finally:
        probe.close()
    keeper = socket.socket(family, socket.SOCK_STREAM)
    keeper.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    keeper.bind((bind_host, port))
    return keeper


class WorkerSupervisor:
    def __init__(self, settings: ServerSettings, log_level: str = "WARNING") -> None:
        self.settings = settings
        self.log_level = log_level
        self.context = multiprocessing.get_context("spawn")
        self.port = 0
        # The sidecar started here for the workers (with a limits file), and the limiter they use.
        self.limiter: LimiterProcess | None = None
        self.limiter_address = settings.ratelimiter_address
        self.workers: dict[int, multiprocessing.process.BaseProcess] = {}
        self.stopping = threading.Event()
        self._keeper: socket.socket | None = None
        self._http_keeper: socket.socket | None = None

    def start(self) -> str:
        """Migrate once, start the sidecar if needed, then every worker; the first worker's banner."""
        from stepstream.server.storage.db import upgrade

        if self.settings.migrate_on_start:
            upgrade(self.settings.db_url)
        self._keeper = _reserve_port(self.settings.host, self.settings.port)
        self.port = self._keeper.getsockname()[1]
        if self.settings.http_port:
            # The HTTP listener is shared the same way: every worker binds it with SO_REUSEPORT.
            self._http_keeper = _reserve_port(self.settings.host, self.settings.http_port)
        if self.limiter_address is None and self.settings.limits_path:
            from stepstream.server.process import LimiterProcess

            self.limiter = LimiterProcess("--config", self.settings.limits_path, "--host", "127.0.0.1")
            self.limiter_address = self.limiter.start()
        # Started together, awaited in turn: each takes a second or two to import and open.
        pending = {i: self._spawn(i) for i in range(1, self.settings.workers + 1)}
        banners = [self._await_serving(i, receive) for i, receive in pending.items()]
        return f"{banners[0]} with {self.settings.workers} workers"

    def _spawn(self, index: int) -> Any:
        settings = worker_settings(self.settings, index, self.port, self.limiter_address)
        receive, send = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=_worker_main, args=(settings, send, self.log_level), name=f"stepstream-worker-{index}"
        )
        with _own_environment(settings):
            process.start()
        send.close()
        self.workers[index] = process
        return receive

    def _await_serving(self, index: int, receive: Any) -> str:
        if not receive.poll(START_TIMEOUT_SECONDS):
            raise WorkerFailed(f"worker {index} did not start serving in {START_TIMEOUT_SECONDS:.0f} s")
        try:
            banner: str = receive.recv()
        except EOFError:
            self.workers[index].join(10)
            code = self.workers[index].exitcode
            raise WorkerFailed(f"worker {index} exited with code {code} before serving") from None
        return banner

    def supervise(self) -> None:
        """Restart workers that die until stop() is called."""
        while not self.stopping.is_set():
            sentinels = {p.sentinel: i for i, p in self.workers.items()}
            ready = multiprocessing.connection.wait(list(sentinels), timeout=0.5)
            for sentinel in ready:
                index = sentinels[sentinel]  # type: ignore[index]
                if self.stopping.is_set():
                    break
                code = self.workers[index].exitcode
                log.error("worker %d exited with code %s; restarting it", index, code)
                time.sleep(RESTART_BACKOFF_SECONDS)
                try:
                    self._await_serving(index, self._spawn(index))
                except WorkerFailed as exc:
                    log.error("%s; trying again", exc)

    def stop(self, timeout: float) -> None:
        """SIGTERM every worker (each drains), SIGKILL what has not exited in time, then the sidecar."""
        self.stopping.set()
        for process in self.workers.values():
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
        deadline = time.monotonic() + timeout
        for process in self.workers.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(10)
        if self.limiter is not None:
            self.limiter.stop()
        for keeper in (self._keeper, self._http_keeper):
            if keeper is not None:
                keeper.close()


def serve_workers(settings: ServerSettings, log_level: str = "WARNING") -> None:
    """Run the workers until SIGTERM or SIGINT, then drain them all."""
    supervisor = WorkerSupervisor(settings, log_level)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: supervisor.stopping.set())
    try:
        print(supervisor.start(), flush=True)
        supervisor.supervise()
    finally:
        supervisor.stop(settings.shutdown_grace_seconds + 10)
