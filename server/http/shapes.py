"""Domain records as the JSON objects LangGraph's HTTP API returns (threads, runs, assistants,
state), and the status mapping its clients expect."""

from __future__ import annotations

import datetime
from typing import Any

from stepstream.server.core import records as rec
from stepstream.server.core.assistants import default_assistant_id
from stepstream.server.core.jsonio import loads
from stepstream.server.core.tracing import trace_id_of

# A run that stopped at interrupt() succeeded as far as LangGraph's server is concerned (its
# thread is the one `interrupted`); its `interrupted` run status means cancelled.
RUN_STATUS = {
    rec.RunStatus.QUEUED: "pending",
    rec.RunStatus.RUNNING: "running",
    rec.RunStatus.SUCCEEDED: "success",
    rec.RunStatus.INTERRUPTED: "success",
    rec.RunStatus.FAILED: "error",
    rec.RunStatus.CANCELLED: "interrupted",
}
RUN_STATUS_FILTER: dict[str, list[rec.RunStatus]] = {
    "pending": [rec.RunStatus.QUEUED],
    "running": [rec.RunStatus.RUNNING],
    "success": [rec.RunStatus.SUCCEEDED, rec.RunStatus.INTERRUPTED],
    "error": [rec.RunStatus.FAILED],
    "interrupted": [rec.RunStatus.CANCELLED],
    "timeout": [],
}
THREAD_STATUS = {
    rec.SessionStatus.IDLE: "idle",
    rec.SessionStatus.BUSY: "busy",
    rec.SessionStatus.INTERRUPTED: "interrupted",
    rec.SessionStatus.ERROR: "error",
}
THREAD_STATUS_FILTER = {v: k for k, v in THREAD_STATUS.items()}


def assistant_id(graph_id: str) -> str:
    """The graph's default assistant id, derived as every door derives it (core/assistants.py)."""
    return default_assistant_id(graph_id)


def iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat()


def assistant(saved: rec.Assistant, graph_description: str = "") -> dict[str, Any]:
    """An assistant as LangGraph's server answers it; a default one takes its graph's description."""
    return {
        "assistant_id": saved.assistant_id,
        "graph_id": saved.graph_id,
        "config": saved.config,
        "context": saved.context,
        "metadata": saved.metadata,
        "name": saved.name,
        "description": saved.description or graph_description or None,
        "version": saved.version,
        "created_at": iso(saved.created_at),
        "updated_at": iso(saved.updated_at),
    }


def new_thread(session: rec.Session) -> dict[str, Any]:
    """A thread as its creation answers it."""
    return {
        "thread_id": session.session_id,
        "created_at": iso(session.created_at),
        "updated_at": iso(session.updated_at),
        "state_updated_at": iso(session.updated_at),
        "metadata": session.metadata,
        "status": THREAD_STATUS.get(session.status, session.status),
        "config": {},
        "values": None,
    }


def thread(
    session: rec.Session, values: Any = None, interrupts: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        **new_thread(session),
        "config": {"configurable": {}},
        "values": values,
        "interrupts": interrupts or {},
        "error": None,
    }


def run(r: rec.Run, streamed: dict[str, Any] | None = None) -> dict[str, Any]:
    """A run; `streamed`: how it was asked to stream (known to the call that created it only)."""
    options = r.options
    aid = r.assistant_id or assistant_id(r.graph_id)
    kwargs = {
        "input": loads(r.input_json) if r.input_json else None,
        "command": loads(r.command_json) if r.command_json else None,
        "config": {
            "configurable": {
                **options.configurable,
                "thread_id": r.session_id,
                "run_id": r.run_id,
                "graph_id": r.graph_id,
                "assistant_id": aid,
            },
            "metadata": options.metadata,
        },
        "context": loads(r.context_json) if r.context_json else {},
        "interrupt_before": list(options.interrupt_before) or None,
        "interrupt_after": list(options.interrupt_after) or None,
        "stream_mode": ["values"],
        "subgraphs": False,
        "resumable": False,
        "temporary": False,
        "webhook": None,
        "feedback_keys": None,
        "checkpoint_during": True,
        "durability": "async",
        **(streamed or {}),
    }
    shape = {
        "run_id": r.run_id,
        "thread_id": r.session_id,
        "assistant_id": aid,
        "created_at": iso(r.created_at),
        "updated_at": iso(r.ended_at or r.started_at or r.created_at),
        "status": RUN_STATUS.get(r.status, r.status),
        "metadata": options.metadata,
        "kwargs": kwargs,
        "multitask_strategy": options.busy_policy,
        "langsmith_session_name": None,
    }
    # stepstream's own field, only when the run is traced (LangGraph's run object has none, and
    # a client comparing the two sees nothing new on an untraced run).
    if trace_id := trace_id_of(r.trace_context):
        shape["trace_id"] = trace_id
    return shape


def interrupt(i: dict[str, Any]) -> dict[str, Any]:
    """A stored interrupt ({"interrupt_id", "value_json"}) as LangGraph's `Interrupt` JSON."""
    return {"id": i.get("interrupt_id") or None, "value": loads(i["value_json"]), "response_schema": None}


def checkpoint_ref(config: Any) -> dict[str, Any] | None:
    if not config:
        return None
    configurable = config.get("configurable", {})
    return {
        "thread_id": configurable.get("thread_id"),
        "checkpoint_ns": configurable.get("checkpoint_ns", ""),
        "checkpoint_id": configurable.get("checkpoint_id"),
        "checkpoint_map": configurable.get("checkpoint_map"),
    }


def snapshot_interrupt(i: Any) -> dict[str, Any]:
    return {"id": i.id, "value": i.value, "response_schema": None}


def state(snapshot: Any, thread_id: str) -> dict[str, Any]:
    """A LangGraph StateSnapshot as the thread state JSON; a thread without a graph yet is empty."""
    if snapshot is None:
        return {
            "values": {},
            "next": [],
            "tasks": [],
            "metadata": {},
            "created_at": None,
            "checkpoint": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": None},
            "parent_checkpoint": None,
            "interrupts": [],
        }
    return {
        "values": snapshot.values,
        "next": list(snapshot.next),
        "tasks": [
            {
                "id": t.id,
                "name": t.name,
                "path": list(t.path),
                "error": str(t.error) if t.error else None,
                "interrupts": [snapshot_interrupt(i) for i in t.interrupts],
                "checkpoint": checkpoint_ref(t.state) if isinstance(t.state, dict) else None,
                "state": None,
                "result": t.result,
            }
            for t in snapshot.tasks
        ],
        "metadata": snapshot.metadata,
        "created_at": snapshot.created_at,
        "checkpoint": checkpoint_ref(snapshot.config),
        "parent_checkpoint": checkpoint_ref(snapshot.parent_config),
        "interrupts": [snapshot_interrupt(i) for i in snapshot.interrupts],
    }


def thread_interrupts(snapshot: Any) -> dict[str, Any]:
    """Pending interrupts keyed by task id, as a thread object carries them."""
    if snapshot is None:
        return {}
    return {t.id: [snapshot_interrupt(i) for i in t.interrupts] for t in snapshot.tasks if t.interrupts}
