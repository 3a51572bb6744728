"""The order a run with repeats measures its systems in (bench/harness.py rotations)."""

from __future__ import annotations

from bench.harness import rotations
from bench.systems import SYSTEMS


def test_each_repeat_measures_every_system_once_starting_one_further_on() -> None:
    a, b, c = SYSTEMS[:3]
    order = rotations((a, b, c), 4)
    assert [(r, s.key) for r, s in order] == [
        (0, a.key), (0, b.key), (0, c.key),
        (1, b.key), (1, c.key), (1, a.key),
        (2, c.key), (2, a.key), (2, b.key),
        (3, a.key), (3, b.key), (3, c.key),
    ]  # fmt: skip


def test_one_repeat_is_the_systems_in_order() -> None:
    assert [s for _, s in rotations(SYSTEMS, 1)] == list(SYSTEMS)
    assert rotations((), 3) == []
