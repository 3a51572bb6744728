"""The `crons` mode of the Go, TypeScript and Java example programs against a live server.

Each creates a cron on the "linear" test graph every 2 s (six fields, a leading seconds
field), lists it with its next fire time, waits for a fire and its run, then deletes the
cron. What it prints is checked against what the server stored: the fire's run is a real
run of the cron, and the cron and its fire records are gone after the delete.
"""

from __future__ import annotations

import datetime
import json

import grpc
import pytest

from stepstream.v1 import crons_pb2, crons_pb2_grpc, runs_pb2, runs_pb2_grpc
from tests.clients.programs import Output, Program

pytestmark = [pytest.mark.process, pytest.mark.timeout(900)]


def instant(text: str) -> datetime.datetime:
    """An RFC 3339 time as each language prints it (Go without fractions, JavaScript with .000)."""
    parsed = datetime.datetime.fromisoformat(text)
    assert parsed.utcoffset() == datetime.timedelta(0), text
    return parsed


def test_example_creates_a_cron_reads_a_fire_and_deletes_it(
    program: Program, server_address: str, graphs_channel: grpc.Channel
) -> None:
    result = program.run("crons", server_address)
    assert result.returncode == 0, f"{program.language} example failed:\n{result.stdout}\n{result.stderr}"
    output = Output.parse(result.stdout)

    _, cron_id, next_fire = output.first("cron")
    first_due = instant(next_fire)
    assert first_due.microsecond == 0 and first_due.second % 2 == 0  # "*/2" in the seconds field
    _, listed_id, listed_next = output.first("listed")
    assert listed_id == cron_id and instant(listed_next) >= first_due

    # The fire record names a real run of the cron, started for that due time.
    _, fired_id, run_id, due_at = output.first("fire")
    assert fired_id == cron_id
    due = instant(due_at)
    assert due >= first_due and due.second % 2 == 0
    response: runs_pb2.GetRunResponse = runs_pb2_grpc.RunServiceStub(graphs_channel).GetRun(
        runs_pb2.GetRunRequest(run_id=run_id), timeout=10
    )
    run = response.run
    assert run.graph_id == "linear" and run.status == runs_pb2.RUN_STATUS_SUCCEEDED
    assert json.loads(run.values_json) == {"x": 43, "log": ["a", "b", "c"]}
    metadata = json.loads(run.options.metadata_json)
    assert metadata["cron_id"] == cron_id and metadata["client"] == program.language
    assert metadata["cron_due_at"] == due.timestamp()  # epoch seconds
    assert output.first("ran")[1:] == [run_id, "RUN_STATUS_SUCCEEDED", "43"]

    # Deleted: the example saw NOT_FOUND, and so does the server's own view (fire records too).
    assert output.first("deleted")[1] == cron_id and output.first("gone")[1] == cron_id
    crons = crons_pb2_grpc.CronServiceStub(graphs_channel)
    with pytest.raises(grpc.RpcError) as error:
        crons.GetCron(crons_pb2.GetCronRequest(cron_id=cron_id), timeout=10)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    request = crons_pb2.ListCronsRequest(page_size=100)
    remaining: crons_pb2.ListCronsResponse = crons.ListCrons(request, timeout=10)
    assert cron_id not in [cron.cron_id for cron in remaining.crons]
