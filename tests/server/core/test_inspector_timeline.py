"""The timeline builder (core/inspector/timeline.py) over events as the executor stores them: a
takeover between replicas, a task started again after it (a retry), subgraph tasks under the
root task that runs them, and what an unfinished task becomes by the run's outcome."""

from __future__ import annotations

from typing import Any

import pytest

from stepstream.server.core import events as ev
from stepstream.server.core import records as rec
from stepstream.server.core.events import RunEvent
from stepstream.server.core.inspector.timeline import TaskStatus, build_timeline


def _run(status: rec.RunStatus) -> rec.Run:
    return rec.Run("r", "alice", "s", "g", status, rec.RunOptions(), created_at=0.0)


def _events(*items: tuple[float, str, tuple[str, ...], dict[str, Any]]) -> list[RunEvent]:
    return [RunEvent("r", i + 1, t, kind, ns, data) for i, (t, kind, ns, data) in enumerate(items)]


def _task(task_id: str, node: str, ns: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"task_id": task_id, "node": node, "namespace": list(ns)}


def test_takeover_retry_and_subgraph_tasks() -> None:
    sub = ("child:t2",)
    events = _events(
        (1.0, ev.RUN_STARTED, (), {"attempt": 1, "replica": "a"}),
        (1.1, ev.SUPERSTEP_STARTED, (), {"step": 0, "tasks": [_task("t1", "first")]}),
        (1.1, ev.TASK_STARTED, (), {"step": 0, "task": _task("t1", "first")}),
        (1.5, ev.TASK_FINISHED, (), {"step": 0, "task": _task("t1", "first"), "duration_seconds": 0.3}),
        (1.6, ev.SUPERSTEP_FINISHED, (), {"step": 0, "checkpoint_id": "c0"}),
        (1.7, ev.SUPERSTEP_STARTED, (), {"step": 1, "tasks": [_task("t2", "child")]}),
        (1.7, ev.TASK_STARTED, (), {"step": 1, "task": _task("t2", "child")}),
        # Replica a dies; b takes the run over and runs superstep 1 again.
        (9.0, ev.RUN_STARTED, (), {"attempt": 2, "replica": "b"}),
        (9.1, ev.SUPERSTEP_STARTED, (), {"step": 1, "tasks": [_task("t2", "child")]}),
        (9.1, ev.TASK_STARTED, (), {"step": 1, "task": _task("t2", "child")}),
        (9.2, ev.TASK_STARTED, sub, {"step": 0, "task": _task("s1", "inner", sub)}),
        (
            9.4,
            ev.TASK_FAILED,
            sub,
            {
                "step": 0,
                "task": _task("s1", "inner", sub),
                "error_type": "KeyError",
                "error_message": "'x'",
                "duration_seconds": 0.1,
            },
        ),
    )
    timeline = build_timeline(_run(rec.RunStatus.FAILED), events)
    assert timeline.replica == "b"
    assert [(t.at, t.from_replica, t.to_replica) for t in timeline.takeovers] == [(9.0, "a", "b")]
    first, second = timeline.supersteps
    assert (first.step, first.checkpoint_id, first.started_at, first.ended_at) == (0, "c0", 1.1, 1.6)
    (t1,) = first.tasks
    assert (t1.status, t1.started_at, t1.replica, t1.retries) == (TaskStatus.OK, 1.1, "a", 0)
    assert t1.ended_at == pytest.approx(1.4)  # its start plus its measured duration
    t2, s1 = second.tasks
    assert (t2.id, t2.retries, t2.replica, t2.started_at) == ("t2", 1, "b", 9.1)
    assert t2.status is TaskStatus.INTERRUPTED
    assert (s1.name, s1.path, s1.status, s1.error) == ("inner", sub, TaskStatus.ERROR, "KeyError: 'x'")
    assert second.checkpoint_id is None and second.ended_at == s1.ended_at


def test_an_active_run_keeps_its_open_tasks_running() -> None:
    events = _events(
        (1.0, ev.RUN_STARTED, (), {"attempt": 1, "replica": "a"}),
        (1.1, ev.SUPERSTEP_STARTED, (), {"step": 0, "tasks": [_task("t1", "n")]}),
        (1.1, ev.TASK_STARTED, (), {"step": 0, "task": _task("t1", "n")}),
    )
    timeline = build_timeline(_run(rec.RunStatus.RUNNING), events)
    (row,) = timeline.supersteps
    assert row.ended_at is None and [t.status for t in row.tasks] == [TaskStatus.RUNNING]
