"""What a caller sends to shape a run: RunOptions, Command and BusyPolicy."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Any, Final

from stepstream.client.jsonio import Json, decode, encode, encode_optional
from stepstream.v1 import common_pb2, runs_pb2


class _Unset(enum.Enum):
    # A sentinel distinct from None, because None (JSON null) is a valid resume value.
    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset.UNSET


class BusyPolicy(enum.StrEnum):
    """What happens when a run is started on a session that has an active run."""

    REJECT = "reject"
    ENQUEUE = "enqueue"
    INTERRUPT = "interrupt"
    ROLLBACK = "rollback"

    def to_proto(self) -> common_pb2.BusyPolicy.ValueType:
        return common_pb2.BusyPolicy.Value(f"BUSY_POLICY_{self.name}")

    @classmethod
    def from_proto(cls, value: int) -> BusyPolicy | None:
        name = common_pb2.BusyPolicy.Name(value).removeprefix("BUSY_POLICY_")  # type: ignore[arg-type]
        return None if name == "UNSPECIFIED" else cls[name]


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a run executes; every field's zero value means "the server's default"."""

    # Tasks of one superstep executing at once (LangGraph's max_concurrency).
    max_concurrency: int = 0
    # A BusyPolicy or its name ("enqueue"); None: the server's default (reject).
    busy_policy: BusyPolicy | str | None = None
    # Superstep limit (LangGraph's recursion_limit).
    recursion_limit: int = 0
    # Values for the graph's `configurable` config.
    configurable: Mapping[str, Json] | None = None
    metadata: Mapping[str, Json] | None = None
    interrupt_before: Sequence[str] = ()
    interrupt_after: Sequence[str] = ()

    def __post_init__(self) -> None:
        if self.busy_policy is not None:
            object.__setattr__(self, "busy_policy", BusyPolicy(self.busy_policy))

    def to_proto(self) -> runs_pb2.RunOptions:
        policy = (
            BusyPolicy(self.busy_policy).to_proto()
            if self.busy_policy
            else common_pb2.BUSY_POLICY_UNSPECIFIED
        )
        return runs_pb2.RunOptions(
            max_concurrency=self.max_concurrency,
            busy_policy=policy,
            recursion_limit=self.recursion_limit,
            configurable_json=encode_optional(self.configurable),
            metadata_json=encode_optional(self.metadata),
            interrupt_before=list(self.interrupt_before),
            interrupt_after=list(self.interrupt_after),
        )

    @classmethod
    def from_proto(cls, msg: runs_pb2.RunOptions) -> RunOptions:
        return cls(
            max_concurrency=msg.max_concurrency,
            busy_policy=BusyPolicy.from_proto(msg.busy_policy),
            recursion_limit=msg.recursion_limit,
            configurable=decode(msg.configurable_json),
            metadata=decode(msg.metadata_json),
            interrupt_before=tuple(msg.interrupt_before),
            interrupt_after=tuple(msg.interrupt_after),
        )


@dataclasses.dataclass(frozen=True)
class Command:
    """LangGraph's Command: answer interrupts and/or steer the graph.

    `resume` answers the single pending interrupt (None is a valid answer:
    JSON null); `resume_by_id` answers several, keyed by interrupt id.
    """

    resume: Any = UNSET
    resume_by_id: Mapping[str, Json] | None = None
    update: Mapping[str, Json] | None = None
    goto: Sequence[str] = ()

    def to_proto(self) -> common_pb2.Command:
        if self.resume is not UNSET and self.resume_by_id:
            raise ValueError("set either resume or resume_by_id, not both")
        return common_pb2.Command(
            resume_json="" if self.resume is UNSET else encode(self.resume),
            resume_by_interrupt_id_json={k: encode(v) for k, v in (self.resume_by_id or {}).items()},
            update_json=encode_optional(self.update),
            goto=list(self.goto),
        )
