"""RunProgress: a run's events folded into what a progress display shows.

UI-agnostic (the CLI renders it with rich; a web front end could render the
same): supersteps with their tasks and each task's state and duration, the
text streamed by chat models, custom values, and how the run ended.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from stepstream.client.events import (
    CustomEvent,
    InterruptRaised,
    MessageChunk,
    RunCancelled,
    RunEvent,
    RunFailed,
    RunFinished,
    RunQueued,
    RunStarted,
    SuperstepFinished,
    SuperstepStarted,
    TaskFailed,
    TaskFinished,
    TaskStarted,
)
from stepstream.client.jsonio import Json
from stepstream.client.models import Interrupt, TaskRef

# Custom values kept for display; older ones are dropped.
_KEEP_CUSTOM = 20


@dataclasses.dataclass
class TaskProgress:
    task_id: str
    node: str
    # "pending" (scheduled), "running", "done", "failed", or, for a task still
    # running when its run ended, "interrupted" or "cancelled".
    state: str = "pending"
    # Clock reading when the start was seen, to show a running task's age.
    started: float | None = None
    duration: float | None = None
    error: str = ""

    def elapsed(self, now: float) -> float | None:
        if self.duration is not None:
            return self.duration
        return None if self.started is None else max(0.0, now - self.started)


@dataclasses.dataclass
class StepProgress:
    step: int
    namespace: tuple[str, ...]
    tasks: dict[str, TaskProgress] = dataclasses.field(default_factory=dict)
    finished: bool = False
    checkpoint_id: str = ""

    def task(self, ref: TaskRef) -> TaskProgress:
        found = self.tasks.get(ref.task_id)
        if found is None:
            found = self.tasks[ref.task_id] = TaskProgress(ref.task_id, ref.node)
        return found


class RunProgress:
    def __init__(self, run_id: str = "", *, clock: Callable[[], float] = time.monotonic) -> None:
        self.run_id = run_id
        self.session_id = ""
        self.graph_id = ""
        # "queued", "running", "succeeded", "interrupted", "failed" or "cancelled".
        self.status = "queued"
        self.steps: dict[tuple[tuple[str, ...], int], StepProgress] = {}
        # Text of each chat model message, in the order messages began.
        self.messages: dict[str, str] = {}
        self.custom: list[tuple[str, Json]] = []
        self.interrupts: tuple[Interrupt, ...] = ()
        self.values: Json = None
        self.error = ""
        self.last_seq = 0
        self.clock = clock
        self.began = clock()
        self.ended: float | None = None

    @property
    def done(self) -> bool:
        return self.ended is not None

    def elapsed(self) -> float:
        return (self.ended if self.ended is not None else self.clock()) - self.began

    def _step(self, namespace: tuple[str, ...], step: int) -> StepProgress:
        key = (namespace, step)
        found = self.steps.get(key)
        if found is None:
            found = self.steps[key] = StepProgress(step, namespace)
        return found

    def apply(self, event: RunEvent) -> None:  # one branch per event kind
        self.run_id = self.run_id or event.run_id
        self.last_seq = max(self.last_seq, event.seq)
        data, ns, now = event.data, event.namespace, self.clock()
        if isinstance(data, RunQueued | RunStarted):
            self.session_id, self.graph_id = data.session_id, data.graph_id
            if isinstance(data, RunStarted):
                self.status = "running"
        elif isinstance(data, SuperstepStarted):
            self.status = "running"
            step = self._step(ns, data.step)
            for ref in data.tasks:
                step.task(ref)
        elif isinstance(data, TaskStarted):
            task = self._step(ns, data.step).task(data.task)
            task.state, task.started = "running", now
        elif isinstance(data, TaskFinished):
            task = self._step(ns, data.step).task(data.task)
            task.state, task.duration = "done", data.duration
        elif isinstance(data, TaskFailed):
            task = self._step(ns, data.step).task(data.task)
            task.state, task.duration = "failed", data.duration
            task.error = f"{data.error_type}: {data.error_message}"
        elif isinstance(data, SuperstepFinished):
            step = self._step(ns, data.step)
            step.finished, step.checkpoint_id = True, data.checkpoint_id
        elif isinstance(data, MessageChunk):
            self.messages[data.message_id] = self.messages.get(data.message_id, "") + data.text
        elif isinstance(data, CustomEvent):
            self.custom = [*self.custom[-(_KEEP_CUSTOM - 1) :], (data.node, data.value)]
        elif isinstance(data, InterruptRaised):
            self.interrupts = data.interrupts
        else:
            self._end(data, now)

    def _end(self, data: object, now: float) -> None:
        if isinstance(data, RunFinished):
            self.values = data.values
            self.interrupts = data.interrupts
            self.status = "interrupted" if data.interrupts else "succeeded"
        elif isinstance(data, RunFailed):
            self.status, self.error = "failed", f"{data.error_type}: {data.error_message}"
        elif isinstance(data, RunCancelled):
            self.status, self.error = "cancelled", data.reason
        else:
            return
        self.ended = now
        for step in self.steps.values():
            for task in step.tasks.values():
                if task.state != "running":
                    continue
                if task.started is not None:
                    task.duration = now - task.started
                if self.status in ("interrupted", "cancelled"):
                    task.state = self.status
