"""RunProgress folds events into supersteps, tasks, streamed text and the run's end."""

from __future__ import annotations

from stepstream.client.events import (
    CustomEvent,
    EventData,
    MessageChunk,
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
from stepstream.client.models import Interrupt, TaskRef
from stepstream.client.progress import RunProgress

A = TaskRef("t-a", "a")
B = TaskRef("t-b", "b")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def feed(progress: RunProgress, *items: EventData | tuple[tuple[str, ...], EventData]) -> None:
    for seq, item in enumerate(items, start=progress.last_seq + 1):
        namespace, data = item if isinstance(item, tuple) else ((), item)
        kind = type(data).__name__
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in kind).lstrip("_")
        progress.apply(RunEvent("r1", seq, None, namespace, snake, data))


def test_supersteps_and_task_states() -> None:
    clock = Clock()
    progress = RunProgress(clock=clock)
    feed(
        progress,
        RunQueued("s1", "g", 0),
        RunStarted("s1", "g", 1, "replica-1"),
        SuperstepStarted(1, (A, B)),
        TaskStarted(1, A, {"x": 1}),
    )
    assert (progress.run_id, progress.session_id, progress.graph_id, progress.status) == (
        "r1",
        "s1",
        "g",
        "running",
    )
    step = progress.steps[((), 1)]
    assert [t.state for t in step.tasks.values()] == ["running", "pending"]
    clock.now += 0.5
    assert step.tasks["t-a"].elapsed(clock.now) == 0.5
    assert step.tasks["t-b"].elapsed(clock.now) is None
    feed(progress, TaskFinished(1, A, {"x": 2}, 0.25), TaskFailed(1, B, "ValueError", "no", 0.1))
    assert step.tasks["t-a"].state == "done" and step.tasks["t-a"].elapsed(clock.now) == 0.25
    assert step.tasks["t-b"].state == "failed" and step.tasks["t-b"].error == "ValueError: no"
    feed(progress, SuperstepFinished(1, "c1"), RunFailed("ValueError", "no"))
    assert step.finished and step.checkpoint_id == "c1"
    assert progress.done and progress.status == "failed" and progress.error == "ValueError: no"
    assert progress.last_seq == 8


def test_subgraph_steps_are_kept_apart_by_namespace() -> None:
    progress = RunProgress()
    inner = ("sub:t-a",)
    feed(
        progress,
        SuperstepStarted(1, (A,)),
        (inner, SuperstepStarted(1, (B,))),
        (inner, TaskFinished(1, B, {}, 0.1)),
    )
    assert set(progress.steps) == {((), 1), (inner, 1)}
    assert progress.steps[(inner, 1)].tasks["t-b"].state == "done"


def test_message_chunks_accumulate_per_message_and_custom_values_are_kept() -> None:
    progress = RunProgress()
    feed(
        progress,
        MessageChunk("m1", "llm", 1, {"content": "Hel"}),
        MessageChunk("m2", "llm", 1, {"content": "other"}),
        MessageChunk("m1", "llm", 1, {"content": "lo"}),
        CustomEvent("w", {"i": 1}),
    )
    assert progress.messages == {"m1": "Hello", "m2": "other"}
    assert progress.custom == [("w", {"i": 1})]


def test_run_ending_at_an_interrupt_marks_the_waiting_task() -> None:
    clock = Clock()
    progress = RunProgress(clock=clock)
    question = Interrupt("i1", "question?")
    feed(progress, SuperstepStarted(1, (A,)), TaskStarted(1, A, None))
    clock.now += 2
    feed(progress, RunFinished({"x": 1}, (question,)))
    task = progress.steps[((), 1)].tasks["t-a"]
    assert progress.status == "interrupted" and progress.interrupts == (question,)
    assert task.state == "interrupted" and task.duration == 2
    assert progress.elapsed() == 2
    clock.now += 5
    assert progress.elapsed() == 2  # frozen once ended


def test_finished_run_keeps_values() -> None:
    progress = RunProgress()
    feed(progress, RunFinished({"x": 4}, ()))
    assert progress.status == "succeeded" and progress.values == {"x": 4}
