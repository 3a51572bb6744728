"""Webhooks from real replicas on PostgreSQL to a receiver on loopback (the one destination the
servers' allow-list admits): flaky then slow receivers, a SIGKILLed delivering replica,
signatures checked here with the standard library, refused and redirected destinations."""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import hmac
import http.server
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import asyncpg
import grpc
import pytest

from stepstream.server.cluster import LocalCluster
from stepstream.v1 import crons_pb2, crons_pb2_grpc, runs_pb2, runs_pb2_grpc
from tests.pgserver import create_database
from tests.support import GRAPHS_CONFIG, ROOT

pytestmark = [pytest.mark.process, pytest.mark.timeout(300)]

RUNS = 6


class Receiver(http.server.ThreadingHTTPServer):
    """Answers each delivery id's 1st and 2nd attempts 500, its 3rd after the sender's timeout,
    then 200; /redirect answers 302 towards `redirect_to`."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.received: list[tuple[str, dict[str, str], bytes, int]] = []
        self.attempts: collections.Counter[str] = collections.Counter()
        self.redirect_to = ""
        self.hold = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        headers = {k.lower(): v for k, v in self.headers.items()}
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("location", self.server.redirect_to)
            self.end_headers()
            return
        with self.server.lock:
            self.server.attempts[headers["webhook-id"]] += 1
            attempt = self.server.attempts[headers["webhook-id"]]
        code = 500 if attempt <= 2 else 200
        # Recorded as it arrives (a later attempt may be answered before this one is).
        with self.server.lock:
            self.server.received.append((self.path, headers, body, code if attempt != 3 else -1))
        if attempt == 3:
            time.sleep(2.5)  # past the sender's 1 s timeout
        self.send_response(code)
        self.end_headers()


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """A receiver's check (docs/webhooks.md): one of the signatures is ours."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    given = [s.partition(",")[2] for s in headers["webhook-signature"].split()]
    return any(hmac.compare_digest(expected, g) for g in given)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.fixture
def db(postgres_url: str) -> str:
    return create_database(postgres_url)


def _secret(db: str) -> str:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "stepstream.cli.main",
            "webhooks",
            "secret",
            "issue",
            "--db",
            db,
            "--tenant",
            "local",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return out.stdout.strip()


@pytest.fixture
def cluster(db: str, receiver: Receiver) -> Iterator[LocalCluster]:
    args = [
        "--webhook-allow",
        f"127.0.0.1:{receiver.server_address[1]}",
        "--webhook-timeout-seconds",
        "1",
        "--webhook-backoff-seconds",
        "0.2",
        "--webhook-max-attempts",
        "6",
    ]
    with LocalCluster(db, GRAPHS_CONFIG, 2, serve_args=args, cwd=ROOT) as c:
        yield c


async def _delivering_replica(db: str, timeout: float = 60) -> str:
    conn = await asyncpg.connect(db.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            name = await conn.fetchval(
                "SELECT replica FROM webhook_deliveries WHERE replica IS NOT NULL AND attempts >= 3"
            )
            if name:
                return str(name)
            await asyncio.sleep(0.05)
        raise AssertionError("no delivery reached its third attempt")
    finally:
        await conn.close()


def _deliveries(stub: crons_pb2_grpc.WebhookServiceStub, run_ids: list[str], want: int, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while True:
        items = {
            d.run_id: d
            for d in stub.ListWebhookDeliveries(
                crons_pb2.ListWebhookDeliveriesRequest(page_size=100)
            ).deliveries
            if d.run_id in run_ids
        }
        if sum(1 for d in items.values() if d.status == want) == len(run_ids) or time.monotonic() > deadline:
            return items
        time.sleep(0.3)


def test_every_webhook_delivered_signed_once_per_id_across_a_kill(
    cluster: LocalCluster, receiver: Receiver, db: str
) -> None:
    secret = _secret(db)
    runs = runs_pb2_grpc.RunServiceStub(grpc.insecure_channel(cluster.addresses[1]))
    started = [
        runs.StartRun(
            runs_pb2.StartRunRequest(
                graph_id="linear", input_json='{"x": 1}', webhook=receiver.url + "/hook"
            ),
            timeout=30,
        ).run.run_id
        for _ in range(RUNS)
    ]
    # Kill a replica while it holds a delivery (its third attempt hangs at the receiver).
    victim = asyncio.run(_delivering_replica(db))
    index = [r.name for r in cluster.replicas].index(victim)
    cluster.kill(index)
    webhooks = crons_pb2_grpc.WebhookServiceStub(grpc.insecure_channel(cluster.addresses[1 - index]))
    found = _deliveries(webhooks, started, crons_pb2.WEBHOOK_DELIVERY_STATUS_DELIVERED)
    cluster.restart(index)

    assert {run_id: d.status for run_id, d in found.items()} == dict.fromkeys(
        started, crons_pb2.WEBHOOK_DELIVERY_STATUS_DELIVERED
    )
    by_id: dict[str, list[tuple[dict[str, str], bytes, int]]] = collections.defaultdict(list)
    for path, headers, body, code in receiver.received:
        assert path == "/hook"
        assert verify(secret, headers, body)
        by_id[headers["webhook-id"]].append((headers, body, code))
    # One delivery id per run; its duplicates (retries) carry the same id and body.
    assert {found[r].delivery_id for r in started} == set(by_id)
    for delivery_id, attempts in by_id.items():
        bodies = {body for _, body, _ in attempts}
        assert len(bodies) == 1
        payload = json.loads(bodies.pop())
        assert payload["type"] == "run.succeeded"
        assert found[payload["data"]["run_id"]].delivery_id == delivery_id
        assert payload["data"]["values"] is not None
        # 500, 500, a timeout, then 200: never accepted before the fourth attempt.
        assert [code for _, _, code in attempts][:3] == [500, 500, -1], delivery_id
        assert 200 in [code for _, _, code in attempts]


def test_refused_and_redirected_destinations(cluster: LocalCluster, receiver: Receiver, db: str) -> None:
    _secret(db)
    channel = grpc.insecure_channel(cluster.addresses[0])
    runs = runs_pb2_grpc.RunServiceStub(channel)
    crons = crons_pb2_grpc.CronServiceStub(channel)
    port = receiver.server_address[1]
    # A name resolving to loopback, a literal private address, the allowed address on another
    # port: refused when the run (or cron) is created, nothing stored.
    for url in (f"http://localhost:{port + 1}/x", "http://10.0.0.1/x", f"http://127.0.0.1:{port + 1}/"):
        with pytest.raises(grpc.RpcError) as refused:
            runs.StartRun(
                runs_pb2.StartRunRequest(graph_id="linear", input_json="{}", webhook=url), timeout=10
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a public address" in (refused.value.details() or "")
        with pytest.raises(grpc.RpcError) as refused:
            spec = crons_pb2.CronSpec(cron="* * * * *", graph_id="linear", webhook=url)
            crons.CreateCron(crons_pb2.CreateCronRequest(spec=spec), timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (refused.value.details() or "").startswith("spec.webhook")
    assert runs.ListRuns(runs_pb2.ListRunsRequest(), timeout=10).runs == []
    assert crons.ListCrons(crons_pb2.ListCronsRequest(), timeout=10).crons == []

    # An allowed receiver that redirects to a loopback port not allowed: never followed.
    target = Receiver()
    threading.Thread(target=target.serve_forever, daemon=True).start()
    try:
        receiver.redirect_to = target.url + "/stolen"
        run = runs.StartRun(
            runs_pb2.StartRunRequest(graph_id="linear", input_json="{}", webhook=receiver.url + "/redirect"),
            timeout=30,
        ).run
        webhooks = crons_pb2_grpc.WebhookServiceStub(channel)
        found = _deliveries(webhooks, [run.run_id], crons_pb2.WEBHOOK_DELIVERY_STATUS_DEAD)
        dead = found[run.run_id]
        assert dead.status == crons_pb2.WEBHOOK_DELIVERY_STATUS_DEAD
        assert dead.attempts == 6 and dead.last_status_code == 302
        assert "not followed" in dead.last_error
        assert target.received == []
        listed = webhooks.ListWebhookDeliveries(
            crons_pb2.ListWebhookDeliveriesRequest(statuses=[crons_pb2.WEBHOOK_DELIVERY_STATUS_DEAD])
        ).deliveries
        assert [d.delivery_id for d in listed] == [dead.delivery_id]
    finally:
        target.shutdown()
