"""Server-made ids: UUIDv7, so rows keyed by them are inserted in creation order."""

from __future__ import annotations

import time
import uuid

from stepstream.server.core.ids import new_id


def test_ids_are_version_7_uuids_in_their_canonical_text() -> None:
    made = new_id()
    parsed = uuid.UUID(made)
    assert parsed.version == 7 and str(parsed) == made


def test_ids_sort_in_the_order_they_were_made() -> None:
    made = []
    for _ in range(3):
        made += [new_id() for _ in range(2_000)]
        time.sleep(0.002)  # and across milliseconds
    assert made == sorted(made)
    assert len(set(made)) == len(made)
