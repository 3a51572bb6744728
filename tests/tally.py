"""Counting runs through a fault: started, ended (each way), and lost (never ended)."""

from __future__ import annotations

import collections
import dataclasses
import time

import grpc

from stepstream.v1 import runs_pb2
from tests.rpc import Api

ENDED = {
    runs_pb2.RUN_STATUS_SUCCEEDED,
    runs_pb2.RUN_STATUS_FAILED,
    runs_pb2.RUN_STATUS_CANCELLED,
    runs_pb2.RUN_STATUS_INTERRUPTED,
}


@dataclasses.dataclass
class Tally:
    started: int
    by_status: dict[str, int]
    # Runs a client was told were started that never ended (or vanished).
    lost: list[str]
    errors: dict[str, str]

    @property
    def finished(self) -> int:
        return sum(self.by_status.values())

    def __str__(self) -> str:
        return f"started {self.started}, finished {self.finished} {self.by_status}, lost {len(self.lost)}"


def settle(api: Api, run_ids: list[str], timeout: float = 90.0) -> Tally:
    """Wait for every run to end (retrying while the server or its database is unavailable)."""
    deadline = time.monotonic() + timeout
    final: dict[str, runs_pb2.Run] = {}
    pending = list(run_ids)
    while pending and time.monotonic() < deadline:
        still = []
        for run_id in pending:
            try:
                run = api.get_run(run_id)
            except grpc.RpcError:
                still.append(run_id)
                continue
            if run.status in ENDED:
                final[run_id] = run
            else:
                still.append(run_id)
        pending = still
        if pending:
            time.sleep(0.2)
    counts = collections.Counter(runs_pb2.RunStatus.Name(r.status) for r in final.values())
    errors = {r.run_id: f"{r.error_type}: {r.error_message}" for r in final.values() if r.error_type}
    return Tally(len(run_ids), dict(counts), pending, errors)
