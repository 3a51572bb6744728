"""CronService and WebhookService over gRPC, against the shared server (SQLite): a cron's
life (create, next fire times, fires that run, pause, resume, update, delete), the busy
policy of a cron on a session, and bad input refused naming the field with nothing stored."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from stepstream.v1 import common_pb2, crons_pb2, crons_pb2_grpc, runs_pb2
from tests.rpc import Api

pytestmark = pytest.mark.process


def _crons(api: Api) -> crons_pb2_grpc.CronServiceStub:
    return crons_pb2_grpc.CronServiceStub(api.channel)


def _fires(stub: crons_pb2_grpc.CronServiceStub, cron_id: str, want: int, timeout: float = 30) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        fires = stub.ListCronFires(crons_pb2.ListCronFiresRequest(cron_id=cron_id, page_size=100)).fires
        settled = [f for f in fires if f.outcome != crons_pb2.CRON_FIRE_OUTCOME_PENDING]
        if len(settled) >= want or time.monotonic() > deadline:
            return settled
        time.sleep(0.2)


def test_a_cron_fires_runs_and_is_paused_resumed_updated_deleted(api: Api) -> None:
    stub = _crons(api)
    spec = crons_pb2.CronSpec(
        cron="* * * * * *", timezone="Europe/Paris", graph_id="linear", input_json='{"x": 2}'
    )
    cron = stub.CreateCron(crons_pb2.CreateCronRequest(spec=spec)).cron
    # The next due times: five whole seconds one second apart.
    shown = [t.ToNanoseconds() / 1e9 for t in cron.next_fire_times]
    assert len(shown) == 5 and all(t == int(t) for t in shown)
    assert [b - a for a, b in itertools.pairwise(shown)] == [1.0] * 4

    fires = _fires(stub, cron.cron_id, 2)
    assert len(fires) >= 2
    for fire in fires:
        assert fire.outcome == crons_pb2.CRON_FIRE_OUTCOME_RAN
        run = api.wait(fire.run_id)
        assert run.status == runs_pb2.RUN_STATUS_SUCCEEDED
        assert json.loads(run.options.metadata_json)["cron_id"] == cron.cron_id
    # A new session each time.
    assert len({f.session_id for f in fires}) == len(fires)

    paused = stub.PauseCron(crons_pb2.PauseCronRequest(cron_id=cron.cron_id)).cron
    assert paused.paused and not paused.next_fire_times
    before = len(
        stub.ListCronFires(crons_pb2.ListCronFiresRequest(cron_id=cron.cron_id, page_size=100)).fires
    )
    time.sleep(1.5)
    after = stub.ListCronFires(crons_pb2.ListCronFiresRequest(cron_id=cron.cron_id, page_size=100)).fires
    # At most a fire already claimed when the pause landed; none after it.
    assert len(after) <= before + 1

    resumed = stub.ResumeCron(crons_pb2.ResumeCronRequest(cron_id=cron.cron_id)).cron
    assert not resumed.paused and len(resumed.next_fire_times) == 5
    spec.ClearField("cron")
    spec.interval_seconds = 3600
    updated = stub.UpdateCron(crons_pb2.UpdateCronRequest(cron_id=cron.cron_id, spec=spec)).cron
    times = [t.ToNanoseconds() / 1e9 for t in updated.next_fire_times]
    assert [round(b - a, 3) for a, b in itertools.pairwise(times)] == [3600.0] * 4
    assert cron.cron_id in [c.cron_id for c in stub.ListCrons(crons_pb2.ListCronsRequest()).crons]

    stub.DeleteCron(crons_pb2.DeleteCronRequest(cron_id=cron.cron_id))
    with pytest.raises(grpc.RpcError) as gone:
        stub.GetCron(crons_pb2.GetCronRequest(cron_id=cron.cron_id))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_busy_session_rejects_a_fire_and_the_record_says_so(api: Api) -> None:
    stub = _crons(api)
    busy = api.start("slow", {"steps": 30, "delay": 0.2})
    spec = crons_pb2.CronSpec(
        interval_seconds=1,
        session_id=busy.session_id,
        input_json='{"steps": 1, "delay": 0}',
        options=runs_pb2.RunOptions(busy_policy=common_pb2.BUSY_POLICY_REJECT),
    )
    cron = stub.CreateCron(crons_pb2.CreateCronRequest(spec=spec)).cron
    try:
        fires = _fires(stub, cron.cron_id, 1)
        assert fires and fires[0].outcome == crons_pb2.CRON_FIRE_OUTCOME_REJECTED
        assert "active run" in fires[0].detail and not fires[0].run_id
    finally:
        stub.DeleteCron(crons_pb2.DeleteCronRequest(cron_id=cron.cron_id))
        api.runs.CancelRun(runs_pb2.CancelRunRequest(run_id=busy.run_id))


def _create(**kw: Any) -> Callable[[Api], Any]:
    def call(api: Api) -> Any:
        return _crons(api).CreateCron(crons_pb2.CreateCronRequest(spec=crons_pb2.CronSpec(**kw)))

    return call


def _start(**kw: Any) -> Callable[[Api], Any]:
    return lambda api: api.runs.StartRun(runs_pb2.StartRunRequest(**kw))


CASES = [
    ("invalid cron expression", _create(cron="61 * * * *", graph_id="linear"), "spec.cron"),
    ("cron expression of 3 fields", _create(cron="* * *", graph_id="linear"), "spec.cron"),
    (
        "unknown time zone",
        _create(cron="* * * * *", timezone="Mars/Olympus", graph_id="linear"),
        "spec.timezone",
    ),
    ("interval below a second", _create(interval_seconds=0.1, graph_id="linear"), "spec.interval_seconds"),
    ("unknown assistant", _create(cron="* * * * *", assistant_id="no-such-assistant"), "spec.assistant_id"),
    ("unknown graph", _create(cron="* * * * *", graph_id="nope"), "spec.graph_id"),
    ("unknown session", _create(cron="* * * * *", session_id="no-such-session"), "spec.session_id"),
    ("malformed input", _create(cron="* * * * *", graph_id="linear", input_json="{x"), "spec.input_json"),
    (
        "malformed configurable",
        _create(cron="* * * * *", graph_id="linear", options=runs_pb2.RunOptions(configurable_json="[")),
        "spec.options.configurable_json",
    ),
    (
        "cron webhook to a private address",
        _create(cron="* * * * *", graph_id="linear", webhook="http://10.0.0.1/hook"),
        "spec.webhook",
    ),
    (
        "cron webhook to a name of loopback",
        _create(cron="* * * * *", graph_id="linear", webhook="http://localhost:9/hook"),
        "spec.webhook",
    ),
    ("webhook not http", _start(graph_id="linear", input_json="{}", webhook="file:///etc/passwd"), "webhook"),
    (
        "run webhook to IPv4-mapped IPv6 loopback",
        _start(graph_id="linear", input_json="{}", webhook="http://[::ffff:127.0.0.1]/hook"),
        "webhook",
    ),
    (
        "run webhook to link-local",
        _start(graph_id="linear", input_json="{}", webhook="http://169.254.169.254/latest"),
        "webhook",
    ),
]


def _stored(api: Api) -> Any:
    crons = _crons(api).ListCrons(crons_pb2.ListCronsRequest(page_size=1000)).crons
    runs = api.runs.ListRuns(runs_pb2.ListRunsRequest(page_size=1000)).runs
    return sorted(c.cron_id for c in crons), sorted(r.run_id for r in runs)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_naming_the_field_and_nothing_is_stored(
    api: Api, case: tuple[str, Callable[[Api], Any], str]
) -> None:
    _, call, field = case
    before = _stored(api)
    with pytest.raises(grpc.RpcError) as err:
        call(api)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    status = rpc_status.from_call(err.value)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    assert bad.field_violations[0].field == field, err.value.details()
    assert _stored(api) == before
