"""A run's superstep timeline, rebuilt from its stored events, so any replica can answer.

The events say all of it: `run_started` names the replica of each attempt (a change of replica
is a takeover), `superstep_started`/`superstep_finished` bound each superstep and name its
checkpoint, `task_started` is stored when the task starts and `task_finished`/`task_failed`
carry the task's measured duration (so a bar ends at start + duration, not at the moment its
event was stored), `interrupt_raised` holds the interrupts. A task started again (after a
takeover, or by a retry that LangGraph reports) counts a retry. Subgraph tasks are listed under
the root superstep of the task that runs the subgraph, with their namespace as `path`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from typing import Any

from stepstream.server.core import events as ev
from stepstream.server.core import records as rec
from stepstream.server.core.events import RunEvent
from stepstream.server.core.jsonio import loads


class TaskStatus(enum.StrEnum):
    OK = "ok"
    ERROR = "error"
    INTERRUPTED = "interrupted"
    RUNNING = "running"


@dataclasses.dataclass
class TaskBar:
    id: str
    name: str
    path: tuple[str, ...]
    started_at: float
    ended_at: float | None = None
    status: TaskStatus = TaskStatus.RUNNING
    error: str | None = None
    retries: int = 0
    replica: str | None = None


@dataclasses.dataclass
class SuperstepRow:
    step: int
    started_at: float
    ended_at: float | None = None
    checkpoint_id: str | None = None
    tasks: list[TaskBar] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Takeover:
    at: float
    from_replica: str
    to_replica: str


@dataclasses.dataclass(frozen=True)
class InterruptMark:
    id: str
    value: Any
    step: int


@dataclasses.dataclass(frozen=True)
class Timeline:
    run: rec.Run
    # The replica of the run's latest attempt (None: it never started).
    replica: str | None
    supersteps: tuple[SuperstepRow, ...]
    takeovers: tuple[Takeover, ...]
    interrupts: tuple[InterruptMark, ...]


def _parent_task(namespace: Sequence[str]) -> str:
    """The root task that runs a subgraph: its namespace's first part is `node:task_id`."""
    return namespace[0].rpartition(":")[2] if namespace else ""


class _Builder:
    def __init__(self, run: rec.Run) -> None:
        self.run = run
        self.replica: str | None = None
        self.steps: dict[int, SuperstepRow] = {}
        self.tasks: dict[str, TaskBar] = {}
        # Root task id -> its superstep, for the subgraph tasks it runs.
        self.step_of_task: dict[str, int] = {}
        self.takeovers: list[Takeover] = []
        self.interrupts: list[InterruptMark] = []
        self.last_step: int | None = None

    def feed(self, event: RunEvent) -> None:
        data, ns = event.data, event.namespace
        if event.kind == ev.RUN_STARTED:
            replica = str(data.get("replica") or "")
            if self.replica is not None and replica != self.replica:
                self.takeovers.append(Takeover(event.time, self.replica, replica))
            self.replica = replica
        elif event.kind == ev.SUPERSTEP_STARTED and not ns:
            step = int(data["step"])
            if step not in self.steps:
                self.steps[step] = SuperstepRow(step, event.time)
            self.last_step = step
        elif event.kind == ev.SUPERSTEP_FINISHED and not ns:
            row = self.steps.get(int(data["step"]))
            if row is not None:
                row.ended_at, row.checkpoint_id = event.time, data.get("checkpoint_id") or None
        elif event.kind == ev.TASK_STARTED:
            self._task_started(event)
        elif event.kind in (ev.TASK_FINISHED, ev.TASK_FAILED):
            self._task_ended(event)
        elif event.kind == ev.INTERRUPT_RAISED:
            for item in data.get("interrupts", ()):
                value = loads(item["value_json"]) if item.get("value_json") else None
                self.interrupts.append(InterruptMark(item.get("interrupt_id", ""), value, int(data["step"])))

    def _row_for(self, event: RunEvent) -> SuperstepRow:
        if event.namespace:
            step = self.step_of_task.get(_parent_task(event.namespace), self.last_step)
        else:
            step = int(event.data["step"])
        if step is None:
            step = int(event.data["step"])
        row = self.steps.get(step)
        if row is None:
            row = self.steps[step] = SuperstepRow(step, event.time)
        return row

    def _task_started(self, event: RunEvent) -> None:
        ref = event.data["task"]
        task_id = ref["task_id"]
        bar = self.tasks.get(task_id)
        if bar is not None:
            # Started again: the latest attempt is the bar, the earlier ones are retries.
            bar.retries += 1
            bar.started_at, bar.ended_at, bar.status, bar.error = event.time, None, TaskStatus.RUNNING, None
            bar.replica = self.replica
            return
        bar = TaskBar(task_id, ref["node"], tuple(event.namespace), event.time, replica=self.replica)
        self.tasks[task_id] = bar
        row = self._row_for(event)
        if not event.namespace:
            self.step_of_task[task_id] = row.step
        row.tasks.append(bar)

    def _task_ended(self, event: RunEvent) -> None:
        ref = event.data["task"]
        bar = self.tasks.get(ref["task_id"])
        if bar is None:  # its start was not stored (cannot happen today): show it from here
            self._task_started(event)
            bar = self.tasks[ref["task_id"]]
        duration = float(event.data.get("duration_seconds") or 0.0)
        bar.ended_at = bar.started_at + duration if duration else event.time
        if event.kind == ev.TASK_FAILED:
            bar.status = TaskStatus.ERROR
            parts = (event.data.get("error_type"), event.data.get("error_message"))
            bar.error = ": ".join(p for p in parts if p)
        else:
            bar.status = TaskStatus.OK

    def build(self) -> Timeline:
        for bar in self.tasks.values():
            if bar.status is TaskStatus.RUNNING and not self.run.active:
                # The run ended (interrupted, cancelled, or failed in a sibling) with it unfinished.
                bar.status = TaskStatus.INTERRUPTED
        for row in self.steps.values():
            if row.ended_at is None and not self.run.active:
                ends = [t.ended_at for t in row.tasks if t.ended_at is not None]
                row.ended_at = max(ends) if ends else None
        steps = tuple(self.steps[s] for s in sorted(self.steps))
        return Timeline(self.run, self.replica, steps, tuple(self.takeovers), tuple(self.interrupts))


def build_timeline(run: rec.Run, events: Sequence[RunEvent]) -> Timeline:
    builder = _Builder(run)
    for event in events:
        builder.feed(event)
    return builder.build()
