"""Admission per tenant: a start rate and a cap on runs in flight, each refused with
RESOURCE_EXHAUSTED and RetryInfo, without touching other tenants."""

from __future__ import annotations

import pathlib

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from stepstream.server.core.admission import TenantAdmission
from stepstream.server.core.errors import ResourceExhausted
from stepstream.v1 import runs_pb2
from tests.security.conftest import Tenants, api_key_api, auth_args
from tests.support import ServerProcess

pytestmark = pytest.mark.process


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000_000_000

    def __call__(self) -> int:
        return self.now


def test_start_rate_is_a_token_bucket_per_owner() -> None:
    clock = FakeClock()
    admission = TenantAdmission(runs_per_second=2, burst=3, max_in_flight=0, clock=clock)
    for _ in range(3):
        admission.take_start("alice")
    with pytest.raises(ResourceExhausted) as refused:
        admission.take_start("alice")
    assert refused.value.retry_after == pytest.approx(0.5, abs=1e-6)
    admission.take_start("bob")  # another owner has its own bucket
    clock.now += 500_000_000
    admission.take_start("alice")
    with pytest.raises(ResourceExhausted):
        admission.take_start("alice")


def test_runs_in_flight_are_capped() -> None:
    admission = TenantAdmission(runs_per_second=0, burst=1, max_in_flight=2, in_flight_retry_after=1.5)
    admission.check_in_flight(1)
    with pytest.raises(ResourceExhausted) as refused:
        admission.check_in_flight(2)
    assert refused.value.retry_after == 1.5


def _retry_delay(error: grpc.RpcError) -> float:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    return info.retry_delay.ToTimedelta().total_seconds()


def test_a_tenant_over_its_limits_is_refused_and_others_are_not(
    tenants: Tenants, tmp_path: pathlib.Path
) -> None:
    server = ServerProcess(
        f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        *auth_args(tenants),
        "--tenant-runs-per-second",
        "0.2",
        "--tenant-runs-burst",
        "3",
        "--tenant-max-runs-in-flight",
        "2",
    )
    address = server.start()
    alice = api_key_api(address, tenants.keys["alice"])
    bob = api_key_api(address, tenants.keys["bob"])
    try:
        slow = [alice.start("slow", {"steps": 600, "delay": 0.1}) for _ in range(2)]
        with pytest.raises(grpc.RpcError) as err:
            alice.start("linear", {"x": 1})
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "queued or running" in (err.value.details() or "")
        assert _retry_delay(err.value) > 0
        assert bob.wait(bob.start("linear", {"x": 1}).run_id).status == runs_pb2.RUN_STATUS_SUCCEEDED
        # A run that ends frees its place; the third start uses the last token of the burst.
        alice.runs.CancelRun(runs_pb2.CancelRunRequest(run_id=slow[0].run_id))
        third = alice.start("linear", {"x": 2})
        assert alice.wait(third.run_id).status == runs_pb2.RUN_STATUS_SUCCEEDED
        # The burst of 3 is spent and the rate is one per 5 s.
        with pytest.raises(grpc.RpcError) as err:
            alice.start("linear", {"x": 3})
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "too fast" in (err.value.details() or "")
        assert 0 < _retry_delay(err.value) <= 5
        alice.runs.CancelRun(runs_pb2.CancelRunRequest(run_id=slow[1].run_id))
    finally:
        alice.close()
        bob.close()
        server.stop()
