"""Turn LangGraph's stream (v2 parts of debug, messages, custom, values) into run events.

Superstep k's tasks are announced by the checkpoint of step k-1 and start
together; superstep k ends with the checkpoint of step k. A resumed run first
replays the checkpoint it resumes from and re-announces tasks that already
finished there (they carry a result and get no new result event): those are
not new work, so they are neither listed nor reported as started.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

from stepstream.server.core import events as ev
from stepstream.server.core.events import EventItem, Namespace
from stepstream.server.core.jsonio import dumps


def _ns(part: Mapping[str, Any]) -> Namespace:
    return tuple(part.get("ns") or ())


def _task_finished_before(task: dict[str, Any]) -> bool:
    return "result" in task and not task.get("interrupts") and not task.get("error")


class StreamTranslator:
    def __init__(self) -> None:
        self._open_step: dict[Namespace, int] = {}
        self._planned: dict[Namespace, tuple[int, list[dict[str, Any]]]] = {}
        self._already_done: set[str] = set()
        self._started_at: dict[str, float] = {}
        self.interrupted = False
        self.last_values: Any = None
        self.last_checkpoint_id = ""
        # Whether the graph produced anything (a failure before that is ours, not the graph's).
        self.seen = False

    def feed(self, part: Mapping[str, Any]) -> Iterator[EventItem]:
        self.seen = True
        kind = part["type"]
        ns = _ns(part)
        data = part["data"]
        if kind == "debug":
            yield from self._debug(ns, data)
        elif kind == "messages":
            chunk, meta = data
            yield (
                ev.MESSAGE_CHUNK,
                ns,
                {
                    "message_id": getattr(chunk, "id", None) or "",
                    "node": meta.get("langgraph_node", ""),
                    "step": int(meta.get("langgraph_step", 0)),
                    "chunk_json": dumps(chunk),
                },
            )
        elif kind == "custom":
            yield ev.CUSTOM, ns, {"node": "", "value_json": dumps(data)}
        elif kind == "values":
            if not ns:
                self.last_values = data
            step = self._open_step.get(ns, self._planned.get(ns, (0, []))[0] - 1)
            yield ev.STATE_VALUES, ns, {"step": step, "values_json": dumps(data)}

    def _debug(self, ns: Namespace, data: dict[str, Any]) -> Iterator[EventItem]:
        step = int(data["step"])
        payload = data["payload"]
        kind = data["type"]
        if kind == "checkpoint":
            checkpoint_id = payload["config"]["configurable"].get("checkpoint_id", "")
            if not ns:
                self.last_checkpoint_id = checkpoint_id
            if self._open_step.get(ns) == step:
                del self._open_step[ns]
                yield ev.SUPERSTEP_FINISHED, ns, {"step": step, "checkpoint_id": checkpoint_id}
            planned = []
            for task in payload["tasks"]:
                if _task_finished_before(task):
                    self._already_done.add(task["id"])
                elif not task["name"].startswith("__"):
                    planned.append({"task_id": task["id"], "node": task["name"], "namespace": list(ns)})
            self._planned[ns] = (step + 1, planned)
        elif kind == "task":
            task_id = payload["id"]
            if task_id in self._already_done:
                return
            task_ref = {"task_id": task_id, "node": payload["name"], "namespace": list(ns)}
            if self._open_step.get(ns) != step:
                self._open_step[ns] = step
                planned_step, planned = self._planned.get(ns, (step, []))
                tasks = planned if planned_step == step and planned else [task_ref]
                yield ev.SUPERSTEP_STARTED, ns, {"step": step, "tasks": tasks}
            self._started_at[task_id] = time.monotonic()
            yield ev.TASK_STARTED, ns, {"step": step, "task": task_ref, "input_json": dumps(payload["input"])}
        elif kind == "task_result":
            task_id = payload["id"]
            if task_id in self._already_done:
                return
            started = self._started_at.pop(task_id, None)
            duration = time.monotonic() - started if started is not None else 0.0
            task_ref = {"task_id": task_id, "node": payload["name"], "namespace": list(ns)}
            if payload.get("interrupts"):
                self.interrupted = True
                yield (
                    ev.INTERRUPT_RAISED,
                    ns,
                    {"step": step, "interrupts": ev.interrupt_dicts(payload["interrupts"], ns)},
                )
            elif payload.get("error") is not None:
                error = payload["error"]
                yield (
                    ev.TASK_FAILED,
                    ns,
                    {
                        "step": step,
                        "task": task_ref,
                        "error_type": type(error).__name__ if isinstance(error, BaseException) else "Error",
                        "error_message": str(error),
                        "duration_seconds": duration,
                    },
                )
            else:
                yield (
                    ev.TASK_FINISHED,
                    ns,
                    {
                        "step": step,
                        "task": task_ref,
                        "update_json": dumps(payload.get("result") or {}),
                        "duration_seconds": duration,
                    },
                )
