"""Normalising and comparing transcripts (no server: the committed reference transcripts as data)."""

from __future__ import annotations

import copy

from tests.server.http.differential import TRANSCRIPTS
from tests.server.http.transcript import Normaliser, compare, event_id_shape, load

RUN = "01a24d06-a147-7527-a4d4-2a507bed4e41"
THREAD = "01a24d06-a3c7-7280-89e7-1c589a900224"


def test_the_same_id_keeps_its_placeholder_and_key_order_does_not_matter() -> None:
    event = {"run_id": RUN, "thread_id": THREAD, "note": f"run {RUN} at 2026-12-06T20:23:31.425390+00:00"}
    reordered = dict(reversed(list(event.items())))
    first, second = Normaliser()(event), Normaliser()(reordered)
    assert (
        first == second == {"note": "run <uuid:0> at <time>", "run_id": "<uuid:0>", "thread_id": "<uuid:1>"}
    )


def test_interrupt_ids_addresses_versions_and_event_ids_are_set_aside() -> None:
    norm = Normaliser()
    got = norm(
        {"id": "17c133836b7de97851f8257aa577ac6a", "url": "http://127.0.0.1:59417", "lc_versions": {"x": 1}}
    )
    assert got == {"id": "<hex:0>", "lc_versions": "<version>", "url": "<server>"}
    assert event_id_shape("1796588610409-0") == "N-N"
    assert event_id_shape(None) is None


def test_compare_finds_a_renamed_event_a_lost_event_a_status_and_a_missing_scenario() -> None:
    reference = load(TRANSCRIPTS)
    assert compare(reference, reference) == []
    changed = copy.deepcopy(reference)
    events = changed["stream_values"][1]["events"]
    events[1]["event"] = "value"
    changed["join_after_drop"][2]["events"].pop()
    reject = next(s for s in changed["multitask_reject"] if s.get("status") == 409)
    reject["status"] = 422
    del changed["store"]
    found = compare(reference, changed)
    assert any(line.startswith("stream_values: ") and '"values", got "value"' in line for line in found)
    assert any(line.startswith("join_after_drop: ") and "items expected" in line for line in found)
    assert any(line.startswith("multitask_reject: ") and "expected 409, got 422" in line for line in found)
    assert "store: scenario missing from the new transcript" in found
