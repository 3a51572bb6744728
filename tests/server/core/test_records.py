"""Run options survive their JSON form, field for field."""

from __future__ import annotations

import dataclasses

import orjson

from stepstream.server.core.records import RunOptions


def test_run_options_round_trip_every_field() -> None:
    options = RunOptions(
        max_concurrency=3,
        busy_policy="enqueue",
        recursion_limit=40,
        configurable={"model": "x", "n": 2},
        metadata={"user": "u1"},
        interrupt_before=("a",),
        interrupt_after=("b", "c"),
    )
    encoded = options.to_json()
    assert set(encoded) == {f.name for f in dataclasses.fields(RunOptions)}
    assert RunOptions.from_json(orjson.loads(orjson.dumps(encoded))) == options
