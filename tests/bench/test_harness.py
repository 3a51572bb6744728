"""The benchmark harness end to end on a tiny load: every cell measured or saying why not.

Real processes throughout (stepstream servers on SQLite and PostgreSQL, the
mock APIs, the hold server, load clients); the peers, which need their own
environments from PyPI, are left to `make bench`. The figures are not
checked, only that each system produced them and that the report shows them.
"""

from __future__ import annotations

import asyncio

import pytest

from bench import harness, report
from bench.systems import SYSTEMS as ALL_SYSTEMS

pytestmark = pytest.mark.process

SYSTEMS = ["inproc-none", "inproc-memory", "stepstream-sqlite", "stepstream-pg"]
SCENARIOS = ["linear", "mapreduce", "research", "soak"]


@pytest.fixture(scope="module")
def results() -> dict[str, object]:
    return asyncio.run(harness.run(quick=True, only=SYSTEMS, scenarios=SCENARIOS, small=True))


def test_every_cell_is_measured_or_says_why(results: dict[str, object]) -> None:
    records = results["records"]
    assert isinstance(records, list)
    cells = {(r["system"], r["scenario"], r["concurrency"]) for r in records}
    expected = {(s, sc, c) for s in SYSTEMS for sc in ("linear", "mapreduce", "research") for c in (1, 4)}
    expected |= {(s, "soak", 50) for s in SYSTEMS}
    assert cells == expected
    for r in records:
        if (r["system"], r["scenario"]) == ("inproc-none", "research"):
            assert r["status"] == "cannot run" and "checkpointer" in r["reason"]
        elif r["scenario"] == "soak":
            assert r["status"] == "ok", r
            assert r["succeeded"] == r["count"] == r["peak_in_flight"] == 50, r
        else:
            assert r["status"] == "ok", r
            assert r["runs"] > 0 and r["errors"] == 0, r
            assert r["runs_per_s"] > 0 and r["p50_ms"] > 0 and r["first_event_p50_ms"] > 0, r
            assert r["peak_rss_mib"] > 20, r


def test_servers_report_their_own_cpu_and_rss(results: dict[str, object]) -> None:
    records = results["records"]
    assert isinstance(records, list)
    served = [r for r in records if r["system"].startswith("stepstream") and r["scenario"] == "linear"]
    assert served and all(r["server_cpu_ms_per_run"] > 0 for r in served)
    in_process = [r for r in records if r["system"].startswith("inproc") and r["scenario"] == "linear"]
    assert in_process and all(r["server_cpu_ms_per_run"] is None for r in in_process)


def test_research_cells_carry_the_apis_counters(results: dict[str, object]) -> None:
    records = results["records"]
    assert isinstance(records, list)
    for r in records:
        if r["scenario"] == "research" and r["status"] == "ok":
            share, refused = report.api_use(r)
            assert share is not None and share > 0, r
            assert refused >= 0


def test_report_has_a_row_per_system_in_every_table(results: dict[str, object]) -> None:
    text = report.render(results)
    labels = {s.key: s.label for s in ALL_SYSTEMS}
    sections = text.split("\n### ")[1:]
    titles = [section.split("\n", 1)[0] for section in sections]
    assert titles[0] == "Aims"
    assert [t[:3] for t in titles[1:]] == ["(a)", "(b)", "(c)", "(d)"]
    for section in sections[1:]:
        table = [line for line in section.splitlines() if line.startswith("| ")]
        for key in SYSTEMS:
            assert any(line.startswith(f"| {labels[key]} |") for line in table), (key, section[:80])
    assert "cannot run: its clarification interrupt needs a checkpointer" in text
