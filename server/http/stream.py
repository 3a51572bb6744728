"""Stored run events as LangGraph's SSE stream: one event name per requested stream mode.

Every frame is a function of the run's stored events (and, for `checkpoints` and `debug`, of the
checkpoints the run wrote, which are stored too), so any replica rebuilds the same frames in the
same order at any later time: that is what makes `Last-Event-ID` work across replicas.

Event ids are `<seq>-<n>`: the stored event's seq, and the index of the frame among those that
event produced for this stream's modes. A stored event may give several frames (a finished
task is an `updates`, a `tasks` and a `debug` frame) or none (a mode not asked for).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from langchain_core.messages import BaseMessageChunk, message_chunk_to_message, messages_from_dict

from stepstream.server.core import events as ev
from stepstream.server.core import records as rec
from stepstream.server.core.events import RunEvent
from stepstream.server.core.jsonio import loads
from stepstream.server.http import shapes

Frame = tuple[str, Any]
# A frame with its id: (seq, index among the frames of that seq, event name, data).
Numbered = tuple[int, int, str, Any]
Snapshots = Callable[[], Awaitable[list[Any]]]
# How long a stream waits for a checkpoint its events announce to be readable (its commit may
# trail the event that reports the superstep's start), in tries of CHECKPOINT_RETRY_SECONDS.
CHECKPOINT_TRIES = 40
CHECKPOINT_RETRY_SECONDS = 0.05


def parse_event_id(value: str | None) -> tuple[int, int] | None:
    """A Last-Event-ID as the (seq, frame) it names; None for "-1" (everything). ValueError if
    it is not one of ours."""
    if value is None or value.strip() == "-1":
        return None
    seq, _, frame = value.strip().partition("-")
    return int(seq), int(frame or 0)


def _name(mode: str, namespace: Sequence[str]) -> str:
    return "|".join((mode, *namespace)) if namespace else mode


class StreamTranslator:
    """Frames of one stream: the modes asked for, with subgraph events or not."""

    def __init__(self, run: rec.Run, modes: Sequence[str], subgraphs: bool, snapshots: Snapshots) -> None:
        self.run = run
        self.modes = frozenset(modes)
        self.subgraphs = subgraphs
        self._snapshots = snapshots
        self._values: Any = None
        # (namespace, node, step) -> task id, for the checkpoint namespace of message metadata.
        self._tasks: dict[tuple[tuple[str, ...], str, int], str] = {}
        self._messages: dict[str, BaseMessageChunk] = {}
        self._checkpoints: list[Any] | None = None
        self._emitted_steps: set[int] = set()
        self._held: Numbered | None = None
        self._interrupt_in_values = False
        self._base_metadata = {
            **run.options.metadata,
            "graph_id": run.graph_id,
            "assistant_id": shapes.assistant_id(run.graph_id),
            "run_attempt": max(run.attempt, 1),
            "run_id": run.run_id,
            "thread_id": run.session_id,
        }

    async def numbered(self, event: RunEvent) -> list[Numbered]:
        """The frames of `event`, numbered, in the order they go out.

        A root `values` frame is held until the next event: LangGraph reports a stop at
        interrupt() as one `values` frame carrying the state and `__interrupt__`, while the
        stored stream has the state, then the interrupt. Held, the two become that one frame
        (under the state's id); the next stored event follows at once in every other case.
        """
        out: list[Numbered] = []
        held, self._held = self._held, None
        if held is not None and event.kind == ev.INTERRUPT_RAISED and not event.namespace:
            seq, index, name, values = held
            items = [shapes.interrupt(i) for i in event.data["interrupts"]]
            out.append(
                (seq, index, name, {**(values if isinstance(values, dict) else {}), "__interrupt__": items})
            )
            self._interrupt_in_values = True
        elif held is not None:
            out.append(held)
        frames = await self.frames(event)
        self._interrupt_in_values = False
        for index, (name, data) in enumerate(frames):
            if name == "values" and not event.namespace and not event.terminal:
                self._held = (event.seq, index, name, data)
            else:
                out.append((event.seq, index, name, data))
        return out

    async def frames(self, event: RunEvent) -> list[Frame]:
        ns = event.namespace
        if ns and not self.subgraphs and not event.terminal:
            # Still remembered: a later root event may need what a subgraph task was.
            if event.kind == ev.TASK_STARTED:
                self._remember_task(event)
            return []
        handler = _HANDLERS.get(event.kind)
        return await handler(self, event) if handler is not None else []

    # -- per kind ---------------------------------------------------------------------------
    async def _queued(self, event: RunEvent) -> list[Frame]:
        return [("metadata", {"run_id": self.run.run_id, "attempt": 1})]

    async def _values_event(self, event: RunEvent) -> list[Frame]:
        values = loads(event.data["values_json"])
        if not event.namespace:
            self._values = values
        return [(_name("values", event.namespace), values)] if "values" in self.modes else []

    def _remember_task(self, event: RunEvent) -> None:
        task = event.data["task"]
        self._tasks[(event.namespace, task["node"], int(event.data["step"]))] = task["task_id"]

    def _task_metadata(self, step: int) -> dict[str, Any]:
        return {**self._base_metadata, "langgraph_step": step}

    async def _task_started(self, event: RunEvent) -> list[Frame]:
        self._remember_task(event)
        task, step = event.data["task"], int(event.data["step"])
        payload = {
            "id": task["task_id"],
            "name": task["node"],
            "input": loads(event.data["input_json"]),
            "triggers": [],
            "metadata": self._task_metadata(step),
        }
        return [
            *await self._checkpoints_before(event, step),
            *self._task_frames(event, step, "task", payload),
        ]

    def _task_frames(self, event: RunEvent, step: int, kind: str, payload: dict[str, Any]) -> list[Frame]:
        frames: list[Frame] = []
        if "tasks" in self.modes:
            frames.append((_name("tasks", event.namespace), payload))
        if "debug" in self.modes:
            debug = {"type": kind, "timestamp": shapes.iso(event.time), "step": step, "payload": payload}
            frames.append((_name("debug", event.namespace), debug))
        return frames

    async def _task_finished(self, event: RunEvent) -> list[Frame]:
        task, step = event.data["task"], int(event.data["step"])
        update = loads(event.data["update_json"])
        frames: list[Frame] = []
        if "updates" in self.modes:
            frames.append((_name("updates", event.namespace), {task["node"]: update}))
        result = {
            "id": task["task_id"],
            "name": task["node"],
            "result": update,
            "error": None,
            "interrupts": [],
        }
        return frames + self._task_frames(event, step, "task_result", result)

    async def _task_failed(self, event: RunEvent) -> list[Frame]:
        task, step = event.data["task"], int(event.data["step"])
        error = f"{event.data['error_type']}({event.data['error_message']!r})"
        result = {
            "id": task["task_id"],
            "name": task["node"],
            "result": None,
            "error": error,
            "interrupts": [],
        }
        return self._task_frames(event, step, "task_result", result)

    async def _interrupt(self, event: RunEvent) -> list[Frame]:
        items = [shapes.interrupt(i) for i in event.data["interrupts"]]
        frames: list[Frame] = []
        if "values" in self.modes and not event.namespace and not self._interrupt_in_values:
            values = self._values if isinstance(self._values, dict) else {}
            frames.append(("values", {**values, "__interrupt__": items}))
        if "updates" in self.modes:
            frames.append((_name("updates", event.namespace), {"__interrupt__": items}))
        return frames

    async def _message(self, event: RunEvent) -> list[Frame]:
        data = event.data
        chunk_dict = loads(data["chunk_json"])
        step, node = int(data["step"]), data["node"]
        task_id = self._tasks.get((event.namespace, node, step))
        own_ns = f"{node}:{task_id}" if task_id else node
        checkpoint_ns = "|".join((*event.namespace, own_ns))
        metadata = {
            **self._base_metadata,
            "langgraph_node": node,
            "langgraph_step": step,
            "langgraph_checkpoint_ns": checkpoint_ns,
            "checkpoint_ns": checkpoint_ns,
            "langgraph_path": ["__pregel_pull", node],
        }
        frames: list[Frame] = []
        if "messages-tuple" in self.modes:
            frames.append((_name("messages", event.namespace), [chunk_dict, metadata]))
        if "messages" in self.modes:
            message_id = data["message_id"] or chunk_dict.get("id") or ""
            chunk = messages_from_dict(
                [{"type": chunk_dict.get("type", "AIMessageChunk"), "data": chunk_dict}]
            )[0]
            held = self._messages.get(message_id)
            if held is None:
                frames.append(("messages/metadata", {message_id: {"metadata": metadata}}))
                merged = chunk
            else:
                merged = held + chunk  # type: ignore[operator]
            if isinstance(merged, BaseMessageChunk):
                self._messages[message_id] = merged
                frames.append(("messages/partial", [message_chunk_to_message(merged).model_dump()]))
        return frames

    async def _custom(self, event: RunEvent) -> list[Frame]:
        if "custom" not in self.modes:
            return []
        return [(_name("custom", event.namespace), loads(event.data["value_json"]))]

    async def _superstep_started(self, event: RunEvent) -> list[Frame]:
        return await self._checkpoints_before(event, int(event.data["step"]))

    async def _superstep_finished(self, event: RunEvent) -> list[Frame]:
        step = int(event.data["step"])
        return await self._checkpoints_before(event, step + 1, wait_for=step)

    async def _failed(self, event: RunEvent) -> list[Frame]:
        return [("error", {"error": event.data["error_type"], "message": event.data["error_message"]})]

    async def _finished(self, event: RunEvent) -> list[Frame]:
        return await self._checkpoints_before(event, None)

    # -- checkpoints and debug --------------------------------------------------------------
    async def _checkpoints_before(
        self, event: RunEvent, step: int | None, wait_for: int | None = None
    ) -> list[Frame]:
        """Checkpoint frames for the run's root checkpoints of steps below `step` (all: None) not
        yet sent; a checkpoint a superstep follows from waits until it is readable."""
        if event.namespace or not ({"checkpoints", "debug"} & self.modes):
            return []
        frames: list[Frame] = []
        for snapshot in await self._checkpoints_up_to(step, wait_for):
            number = int((snapshot.metadata or {}).get("step", 0))
            if number in self._emitted_steps or (step is not None and number >= step):
                continue
            self._emitted_steps.add(number)
            frames += self._checkpoint_frames(event, snapshot, number)
        return frames

    async def _checkpoints_up_to(self, step: int | None, wait_for: int | None = None) -> list[Any]:
        """The run's checkpoints, read again when one this stream needs is not among them;
        `wait_for`: a step whose checkpoint is committed (its superstep was reported finished)."""
        for _ in range(CHECKPOINT_TRIES):
            stale = step is None or not self._has(step - 1) or not self._has(wait_for)
            if self._checkpoints is None or stale:
                self._checkpoints = await self._snapshots()
            if wait_for is None or self._has(wait_for):
                break
            await asyncio.sleep(CHECKPOINT_RETRY_SECONDS)
        return self._checkpoints or []

    def _has(self, step: int | None) -> bool:
        if step is None:
            return True
        return any(int((s.metadata or {}).get("step", 0)) == step for s in self._checkpoints or ())

    def _checkpoint_frames(self, event: RunEvent, snapshot: Any, step: int) -> list[Frame]:
        payload = {
            "config": snapshot.config,
            "parent_config": snapshot.parent_config,
            "values": snapshot.values,
            "metadata": snapshot.metadata,
            "next": list(snapshot.next),
            "tasks": [
                {
                    "id": t.id,
                    "name": t.name,
                    "interrupts": [shapes.snapshot_interrupt(i) for i in t.interrupts],
                    "state": None,
                }
                for t in snapshot.tasks
            ],
        }
        frames: list[Frame] = []
        if "checkpoints" in self.modes:
            frames.append(("checkpoints", payload))
        if "debug" in self.modes:
            debug_payload = {
                **payload,
                "checkpoint": shapes.checkpoint_ref(snapshot.config),
                "parent_checkpoint": shapes.checkpoint_ref(snapshot.parent_config),
            }
            frames.append(
                (
                    "debug",
                    {
                        "type": "checkpoint",
                        "timestamp": shapes.iso(event.time),
                        "step": step,
                        "payload": debug_payload,
                    },
                )
            )
        return frames


_HANDLERS: dict[str, Callable[[StreamTranslator, RunEvent], Awaitable[list[Frame]]]] = {
    ev.RUN_QUEUED: StreamTranslator._queued,
    ev.STATE_VALUES: StreamTranslator._values_event,
    ev.TASK_STARTED: StreamTranslator._task_started,
    ev.TASK_FINISHED: StreamTranslator._task_finished,
    ev.TASK_FAILED: StreamTranslator._task_failed,
    ev.INTERRUPT_RAISED: StreamTranslator._interrupt,
    ev.MESSAGE_CHUNK: StreamTranslator._message,
    ev.CUSTOM: StreamTranslator._custom,
    ev.SUPERSTEP_STARTED: StreamTranslator._superstep_started,
    ev.SUPERSTEP_FINISHED: StreamTranslator._superstep_finished,
    ev.RUN_FAILED: StreamTranslator._failed,
    ev.RUN_FINISHED: StreamTranslator._finished,
}
