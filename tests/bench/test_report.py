"""The report of a run with repeats: a cell is the median of its repeats, a ratio the median of
the ratios taken within each repeat."""

from __future__ import annotations

from typing import Any

from bench import report


def cell(system: str, repeat: int, runs_per_s: float, p50_ms: float, **extra: Any) -> dict[str, Any]:
    return {
        "system": system,
        "label": system,
        "family": "stepstream" if system == "ours" else "peer",
        "scenario": "linear",
        "concurrency": 1,
        "status": "ok",
        "runs": 10,
        "errors": 0,
        "runs_per_s": runs_per_s,
        "p50_ms": p50_ms,
        "repeat": repeat,
        **extra,
    }


def data(records: list[dict[str, Any]]) -> dict[str, Any]:
    systems = [
        {"key": k, "label": k, "family": "stepstream" if k == "ours" else "peer"} for k in ("ours", "peer")
    ]
    return {"records": records, "systems": systems}


def test_a_cell_reads_as_the_median_of_its_repeats() -> None:
    res = report.Results(
        data(
            [
                cell("ours", 0, 100.0, 10.0, errors=1, error_kinds={"TransportError: x": 1}),
                cell("ours", 1, 300.0, 30.0),
                cell("ours", 2, 200.0, 20.0),
                {**cell("ours", 3, 0.0, 0.0), "status": "failed", "reason": "x"},
            ]
        )
    )
    merged = res.get("ours", "linear", 1)
    assert merged is not None
    assert merged["runs_per_s"] == 200.0 and merged["p50_ms"] == 20.0
    assert (merged["repeats_measured"], merged["repeats_run"]) == (3, 4)
    assert merged["runs_per_s_range"] == (100.0, 300.0)
    # The errors of every repeat, whichever repeat the other fields are read from.
    assert merged["errors"] == 1 and merged["error_kinds"] == {"TransportError: x": 1}
    assert report.errors_cell(merged) == "1 (TransportError: x)"
    assert "median of 3 of 4 repeats" in report.notes_cell(merged)


def test_a_ratio_is_the_median_of_the_ratios_within_each_repeat() -> None:
    # Medians of the cells would give 200 / 100 = 2; the ratios within repeats are 1, 4 and 3.
    records = [
        cell("ours", 0, 100.0, 10.0),
        cell("peer", 0, 100.0, 1000.0),
        cell("ours", 1, 200.0, 20.0),
        cell("peer", 1, 50.0, 1000.0),
        cell("ours", 2, 300.0, 5.0),
        cell("peer", 2, 100.0, 1000.0),
        # A repeat the peer did not measure pairs with nothing.
        cell("ours", 3, 1000.0, 1.0),
    ]
    res = report.Results(data(records))
    assert res.rate_ratio("ours", "peer", "linear", 1) == 3.0
    assert res.latency_ratio("ours", "peer", "linear") == 100.0


def test_a_run_without_repeats_reads_as_before() -> None:
    only = {k: v for k, v in cell("ours", 0, 100.0, 10.0).items() if k != "repeat"}
    res = report.Results(data([only, {**only, "system": "peer", "runs_per_s": 50.0}]))
    assert res.get("ours", "linear", 1) == only
    assert res.rate_ratio("ours", "peer", "linear", 1) == 2.0
    assert report.notes_cell(only) == ""
