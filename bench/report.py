"""The systems benchmark as markdown: one table per scenario, the ratios, and the aims."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import Any

Record = dict[str, Any]

# The systems each aim compares, by key.
OURS = "stepstream-sqlite"
# Durable stepstream on SQLite: one server process, and one per core (`serve --workers`).
ON_SQLITE = (OURS, "stepstream-sqlite-workers")
LANGGRAPH_SERVER = "lg-server-10"
OFFICIAL_SQLITE = "inproc-sqlite"
AEGRA = "aegra"
ON_POSTGRES = ("stepstream-pg", "stepstream-pg-2")
# stepstream through LangGraph's HTTP API, driven by langgraph-sdk as the peers are: one process
# on SQLite against LangGraph's server, on PostgreSQL against Aegra.
HTTP_ON_SQLITE = ("stepstream-http-sqlite",)
HTTP_ON_POSTGRES = ("stepstream-http-pg",)
SDK = "both via langgraph-sdk"
SOAK_RSS_LIMIT_MIB = 1536


def num(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if digits == 0 and abs(value) < 10:
        return f"{value:.1f}"
    return f"{value:,.{digits}f}"


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x" if value < 10 else f"{value:,.0f}x"


def _measured(r: Record) -> bool:
    return bool(r["status"] == "ok" and r.get("runs", 1))


def median_record(repeats: list[Record]) -> Record:
    """One cell measured in several repeats as one record: the median of each figure over the
    repeats that measured it, the errors summed, and `repeats_measured`/`runs_per_s_range`
    saying how many there were and how far they spread."""
    measured = [r for r in repeats if _measured(r)]
    if not measured:
        return repeats[0]
    merged: Record = dict(measured[0])
    for field, value in measured[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and field != "concurrency":
            values = [r[field] for r in measured if isinstance(r.get(field), (int, float))]
            merged[field] = statistics.median(values) if values else None
    merged["errors"] = sum(int(r.get("errors") or 0) for r in repeats)
    kinds: dict[str, int] = {}
    for r in repeats:
        for kind, count in (r.get("error_kinds") or {}).items():
            kinds[kind] = kinds.get(kind, 0) + count
    merged["error_kinds"] = kinds
    merged["repeats_measured"] = len(measured)
    merged["repeats_run"] = len(repeats)
    rates = [r["runs_per_s"] for r in measured if r.get("runs_per_s") is not None]
    merged["runs_per_s_range"] = (min(rates), max(rates)) if rates else None
    merged.pop("repeat", None)
    return merged


class Results:
    """A run's records by cell. A run with repeats (`python -m bench --repeats N`) has a record
    per cell and repeat: a cell reads as the median over its repeats, and a ratio as the median
    of the ratios taken within each repeat (the two systems measured minutes apart, not the
    whole run)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.records: list[Record] = data["records"]
        self.labels = {s["key"]: s["label"] for s in data["systems"]}
        self.families = {s["key"]: s["family"] for s in data["systems"]}
        self.repeats: dict[tuple[str, str, int], list[Record]] = {}
        for r in self.records:
            self.repeats.setdefault((r["system"], r["scenario"], r["concurrency"]), []).append(r)

    def get(self, system: str, scenario: str, concurrency: int) -> Record | None:
        found = self.repeats.get((system, scenario, concurrency))
        if not found:
            return None
        return found[0] if len(found) == 1 else median_record(found)

    def _paired(
        self, ours: str, theirs: str, scenario: str, concurrency: int, field: str
    ) -> list[tuple[float, float]]:
        """(ours, theirs) of `field` in each repeat that measured both."""
        by_repeat: dict[Any, dict[str, float]] = {}
        for key in (ours, theirs):
            for r in self.repeats.get((key, scenario, concurrency), []):
                if _measured(r) and r.get(field):
                    by_repeat.setdefault(r.get("repeat"), {})[key] = r[field]
        return [(v[ours], v[theirs]) for v in by_repeat.values() if ours in v and theirs in v]

    def ok(self, system: str, scenario: str, concurrency: int) -> Record | None:
        r = self.get(system, scenario, concurrency)
        return r if r is not None and r["status"] == "ok" and r.get("runs", 1) else None

    def value(self, system: str, scenario: str, concurrency: int, field: str) -> float | None:
        r = self.ok(system, scenario, concurrency)
        return None if r is None else r.get(field)

    def rate_ratio(self, ours: str, theirs: str, scenario: str, concurrency: int) -> float | None:
        pairs = self._paired(ours, theirs, scenario, concurrency, "runs_per_s")
        return statistics.median(a / b for a, b in pairs) if pairs else None

    def latency_ratio(self, ours: str, theirs: str, scenario: str, concurrency: int = 1) -> float | None:
        """How many times lower our p50 is."""
        pairs = self._paired(ours, theirs, scenario, concurrency, "p50_ms")
        return statistics.median(b / a for a, b in pairs) if pairs else None

    def concurrencies(self, scenario: str) -> list[int]:
        return sorted({r["concurrency"] for r in self.records if r["scenario"] == scenario})

    def systems(self, scenario: str) -> list[str]:
        order = [s["key"] for s in self.data["systems"]]
        present = {r["system"] for r in self.records if r["scenario"] == scenario}
        return [k for k in order if k in present]


def why(r: Record) -> str:
    return f"{r['status']}: {r.get('reason', '')}".strip()


def errors_cell(r: Record) -> str:
    if not r.get("errors"):
        return "0"
    kinds = "; ".join(r.get("error_kinds", {}))
    return f"{r['errors']} ({kinds[:120]})"


def cpu_cell(r: Record) -> str:
    server, client = r.get("server_cpu_ms_per_run"), r.get("client_cpu_ms_per_run")
    return f"{ms(server)} / {ms(client)}"


def notes_cell(r: Record) -> str:
    notes = []
    done, c = r.get("clients_done_at_open"), r["concurrency"]
    if done is not None and done < c:
        notes.append(f"window opened with {done:.0f} of {c} clients past their warm-up runs")
    if r.get("repeats_run"):
        low, high = r.get("runs_per_s_range") or (None, None)
        spread = f"runs/s {num(low)} to {num(high)}"
        notes.append(f"median of {r['repeats_measured']} of {r['repeats_run']} repeats, {spread}")
    return "; ".join(notes)


def cell_table(res: Results, scenario: str) -> list[str]:
    lines = [
        "| system | clients | runs/s | p50 ms | p99 ms | first event p50 / p99 ms | peak RSS MiB "
        "| CPU ms/run server / client | errors | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for c in res.concurrencies(scenario):
        for key in res.systems(scenario):
            r = res.get(key, scenario, c)
            if r is None:
                continue
            label = res.labels[key]
            if r["status"] != "ok":
                lines.append(f"| {label} | {c} | - | - | - | - | - | - | - | {why(r)} |")
                continue
            if not r.get("runs"):
                waited = (r.get("warmup_seconds") or 0) + (r.get("seconds") or 0)
                lines.append(
                    f"| {label} | {c} | 0 | - | - | - | - | - | {errors_cell(r)} "
                    f"| no run ended in {waited:.0f} s |"
                )
                continue
            lines.append(
                f"| {label} | {c} | {num(r['runs_per_s'])} | {ms(r['p50_ms'])} | {ms(r['p99_ms'])} "
                f"| {ms(r['first_event_p50_ms'])} / {ms(r['first_event_p99_ms'])} "
                f"| {num(r.get('peak_rss_mib'))} | {cpu_cell(r)} | {errors_cell(r)} | {notes_cell(r)} |"
            )
    return lines


def ratio_tables(res: Results, scenario: str) -> list[str]:
    ours = [k for k in res.systems(scenario) if res.families[k] == "stepstream"]
    theirs = [k for k in res.systems(scenario) if res.families[k] != "stepstream"]
    if not ours or not theirs:
        return []
    head = "| stepstream | clients | " + " | ".join(res.labels[k] for k in theirs) + " |"
    lines = ["Throughput ratio, stepstream / each other system (runs/s, same clients):", "", head]
    lines.append("|---|---:|" + "---:|" * len(theirs))
    for key in ours:
        for c in res.concurrencies(scenario):
            cells = [ratio(res.rate_ratio(key, other, scenario, c)) for other in theirs]
            lines.append(f"| {res.labels[key]} | {c} | " + " | ".join(cells) + " |")
    if 1 in res.concurrencies(scenario):
        lines += ["", "p50 latency of one run at 1 client, how many times lower stepstream's is:", ""]
        lines += ["| stepstream | " + " | ".join(res.labels[k] for k in theirs) + " |"]
        lines.append("|---|" + "---:|" * len(theirs))
        for key in ours:
            cells = [ratio(res.latency_ratio(key, other, scenario)) for other in theirs]
            lines.append(f"| {res.labels[key]} | " + " | ".join(cells) + " |")
    return lines


def api_use(r: Record) -> tuple[float | None, int]:
    """(the smaller share of an API's allowed rate admitted over the window, 429s sent).

    Admitted, not served: the API's limit is on the requests it admits, and a served count
    misses those admitted in the window but answered after it closes (the mock APIs answer
    in 20-80 ms: about 1.5% of a 3-second window at 50/s).
    """
    endpoints = (r.get("api") or {}).get("endpoints", {})
    seconds = r.get("api_seconds") or 0
    shares = [
        (e["requests"] - e["rate_limited"]) / seconds / e["rate"]
        for e in endpoints.values()
        if e.get("rate") and seconds
    ]
    refused = sum(int(e.get("rate_limited", 0)) for e in endpoints.values())
    return (min(shares) if shares else None, refused)


def research_table(res: Results) -> list[str]:
    lines = [
        "| system | clients | runs/s | p50 ms | p99 ms | first event p50 ms "
        "| API rate used | HTTP 429s | peak RSS MiB | CPU ms/run server / client | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in res.concurrencies("research"):
        for key in res.systems("research"):
            r = res.get(key, "research", c)
            if r is None:
                continue
            if r["status"] != "ok":
                lines.append(f"| {res.labels[key]} | {c} | - | - | - | - | - | - | - | - | {why(r)} |")
                continue
            share, refused = api_use(r)
            used = "-" if share is None else f"{share:.0%}"
            lines.append(
                f"| {res.labels[key]} | {c} | {num(r['runs_per_s'])} | {ms(r['p50_ms'])} | {ms(r['p99_ms'])} "
                f"| {ms(r['first_event_p50_ms'])} | {used} | {refused:,} | {num(r.get('peak_rss_mib'))} "
                f"| {cpu_cell(r)} | {errors_cell(r)} |"
            )
    return lines


def soak_table(res: Results) -> list[str]:
    lines = [
        "| system | runs | succeeded | most in flight at once | all in flight after s | all ended after s "
        "| peak RSS MiB | note |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key in res.systems("soak"):
        for r in (x for x in res.records if x["system"] == key and x["scenario"] == "soak"):
            if r["status"] != "ok":
                lines.append(f"| {res.labels[key]} | {r['concurrency']:,} | - | - | - | - | - | {why(r)} |")
                continue
            everyone = r["peak_in_flight"] >= r["count"]
            errors = "; ".join(r.get("error_kinds") or [])
            lines.append(
                f"| {res.labels[key]} | {r['count']:,} | {r['succeeded']:,} | {r['peak_in_flight']:,} "
                f"| {num(r['all_in_flight_after_seconds'], 1) if everyone else 'never'} "
                f"| {num(r['total_seconds'], 1)} | {num(r.get('peak_rss_mib'))} | {errors[:160]} |"
            )
    return lines


def aims(res: Results) -> list[str]:
    rows: list[tuple[str, str, bool | None]] = []

    def at_256(ours: str, theirs: str, scenario: str, target: float) -> tuple[str, bool | None]:
        value = res.rate_ratio(ours, theirs, scenario, 256)
        other = res.get(theirs, scenario, 256)
        if value is None and other is not None and other["status"] == "ok" and not other.get("runs"):
            waited = (other.get("warmup_seconds") or 0) + (other.get("seconds") or 0)
            return f"- ({res.labels[theirs]} ended no run in {waited:.0f} s)", None
        return ratio(value), None if value is None else value >= target

    for key in ON_SQLITE:
        if key not in res.labels:
            continue
        label = res.labels[key]
        for scenario, letter in (("linear", "a"), ("mapreduce", "b")):
            text, met = at_256(key, LANGGRAPH_SERVER, scenario, 2)
            rows.append(
                (f"({letter}) {label} runs/s ≥ 2x LangGraph server (10 jobs/worker), 256 clients", text, met)
            )
            text, met = at_256(key, OFFICIAL_SQLITE, scenario, 2)
            rows.append(
                (f"({letter}) {label} runs/s ≥ 2x in-process AsyncSqliteSaver, 256 clients", text, met)
            )
        value = res.latency_ratio(key, LANGGRAPH_SERVER, "linear")
        aim = f"(a) {label}: p50 of one run (1 client) ≥ 100x lower than LangGraph server's"
        rows.append((aim, ratio(value), None if value is None else value >= 100))
    for key in ON_POSTGRES:
        for scenario, letter in (("linear", "a"), ("mapreduce", "b")):
            text, met = at_256(key, AEGRA, scenario, 5)
            rows.append((f"({letter}) {res.labels.get(key, key)} runs/s ≥ 5x Aegra, 256 clients", text, met))
    for key in (k for k in HTTP_ON_SQLITE if k in res.labels):
        label = res.labels[key]
        for scenario, letter in (("linear", "a"), ("mapreduce", "b")):
            text, met = at_256(key, LANGGRAPH_SERVER, scenario, 2)
            aim = f"({letter}) {label} runs/s ≥ 2x LangGraph server (10 jobs/worker), 256 clients, {SDK}"
            rows.append((aim, text, met))
        value = res.latency_ratio(key, LANGGRAPH_SERVER, "linear")
        aim = f"(a) {label}: p50 of one run (1 client) ≥ 100x lower than LangGraph server's, {SDK}"
        rows.append((aim, ratio(value), None if value is None else value >= 100))
    for key in (k for k in HTTP_ON_POSTGRES if k in res.labels):
        for scenario, letter in (("linear", "a"), ("mapreduce", "b")):
            text, met = at_256(key, AEGRA, scenario, 5)
            aim = f"({letter}) {res.labels[key]} runs/s ≥ 5x Aegra, 256 clients, {SDK}"
            rows.append((aim, text, met))
    for key in (*ON_SQLITE, *ON_POSTGRES):
        for c in res.concurrencies("research"):
            r = res.ok(key, "research", c)
            if r is None:
                continue
            share, refused = api_use(r)
            met = share is not None and refused == 0 and share >= 0.95
            text = f"{refused} 429s at {share:.0%} of the allowed rate" if share is not None else "-"
            rows.append(
                (f"(c) {res.labels.get(key, key)}, {c} clients: 0 429s at ≥ 95% of the rate", text, met)
            )
    soak = next((r for r in res.records if r["system"] == OURS and r["scenario"] == "soak"), None)
    if soak is not None and soak["status"] == "ok":
        complete = soak["succeeded"] == soak["count"] and soak["peak_in_flight"] >= soak["count"]
        rss = soak.get("peak_rss_mib") or 0
        text = f"{soak['succeeded']:,}/{soak['count']:,} succeeded, all in flight: {complete}, {rss:,.0f} MiB"
        rows.append(
            ("(d) SQLite: 10,000 in flight complete, peak RSS ≤ 1.5 GiB", text, complete and rss <= 1536)
        )
    lines = ["| aim | measured | met |", "|---|---:|---|"]
    for aim, text, met in rows:
        lines.append(f"| {aim} | {text} | {'yes' if met else 'no' if met is not None else 'not measured'} |")
    return lines


def headline(data: dict[str, Any]) -> list[str]:
    """One row per system: the figures the aims are about (also shown in the README)."""
    res = Results(data)
    top = {sc: max(res.concurrencies(sc), default=0) for sc in ("linear", "mapreduce", "research")}
    lines = [
        f"| system | (a) runs/s, {top['linear']} clients | (a) p50 ms, 1 client "
        "| (a) first event ms, 1 client "
        f"| (b) runs/s, {top['mapreduce']} clients | (c) API rate used / 429s, {top['research']} clients "
        "| (d) 10,000 in flight: peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def show(key: str, scenario: str, c: int, field: str, fmt: Any) -> str:
        r = res.get(key, scenario, c)
        if r is None:
            return "-"
        if r["status"] != "ok":
            return str(r["status"])
        if not r.get("runs"):
            return "no run ended"
        value = r.get(field)
        return "-" if value is None else str(fmt(value))

    for s in data["systems"]:
        key = s["key"]
        research = res.get(key, "research", top["research"])
        if research is None:
            api = "-"
        elif research["status"] != "ok":
            api = research["status"]
        else:
            share, refused = api_use(research)
            api = "-" if share is None else f"{share:.0%} / {refused:,}"
        soak = next((r for r in res.records if r["system"] == key and r["scenario"] == "soak"), None)
        if soak is None:
            held = "-"
        elif soak["status"] != "ok":
            held = soak["status"]
        else:
            held = f"{soak.get('peak_rss_mib') or 0:,.0f}" + (
                "" if soak["succeeded"] == soak["count"] <= soak["peak_in_flight"] else " (incomplete)"
            )
        lines.append(
            f"| {s['label']} | {show(key, 'linear', top['linear'], 'runs_per_s', num)} "
            f"| {show(key, 'linear', 1, 'p50_ms', ms)} | {show(key, 'linear', 1, 'first_event_p50_ms', ms)} "
            f"| {show(key, 'mapreduce', top['mapreduce'], 'runs_per_s', num)} | {api} | {held} |"
        )
    return lines


def header(data: dict[str, Any]) -> list[str]:
    m, v = data["machine"], data["versions"]
    load = ", ".join(f"{x:.1f}" for x in m["load_average_at_start"])
    others = sorted(r["other_cores"] for r in data["records"] if r.get("other_cores") is not None)
    busy = ""
    if others:
        median = others[len(others) // 2]
        busy = f"; processes besides the system and its client used a median {median:.2f} cores in the cells"
    peers = ", ".join(f"{n} {v[n]}" for n in ("langgraph-api", "aegra-api", "langgraph-sdk") if n in v)
    repeats = data.get("repeats", 1)
    return [
        f"{data['started']} ({data['mode']}{f', {repeats} interleaved repeats' if repeats > 1 else ''}, "
        f"{data['seconds']} s): {m['cores']} cores ({m['cpu']}), "
        f"load average at the start {load}{busy}; stepstream {v.get('stepstream commit', '?')}, "
        f"langgraph {v['langgraph']} in-process; the peers' versions are pinned in bench/peers/"
        + (f" ({peers})." if peers else "."),
    ]


METHOD = """How: each system runs the same graphs (bench/graphs, examples/research_assistant) on this
machine, one system at a time, its load client in a process of its own on the same cores.
Closed loop: N clients each start a run, read its events to the end, and start the next. The
window opens once every client has finished two runs (one session in (c)), or at a cap of 25 s
(10 s in (c); the cell's note says so); runs/s = N / the mean time a client takes from one
start to the next (Little's law; the plain count over the window, coarse when runs end in
lockstep, is in systems.json), or the count for the research sessions. A cell's runs still in
flight end before a cell of another scenario, or with fewer clients, starts. "First event" is
the first event of graph output (a node's update, a token, an interrupt). stepstream is driven
by its Python SDK (gRPC streams, every run on its own session; 2 replicas: a LocalCluster as
`stepstream up` runs them, one rate-limiter sidecar, each call to the replica with fewer in
flight; 3 replicas: `stepstream up --redis`, a sidecar per replica, all on one Redis), the
LangGraph-API servers (`langgraph dev`, Aegra, and stepstream's HTTP rows: `serve --http-port`)
by one langgraph-sdk load client streaming stateless runs, with their default settings
otherwise. A run with repeats measures every system once per repeat, each repeat starting one
system further on; a cell is the median of its repeats and a ratio the median of the ratios
taken within each repeat. stepstream serves with `--durability async`, LangGraph's default that the peers run
with: a run's next superstep starts while the last checkpoint commits (a superstep is still
reported only once committed; stepstream's default, sync, waits for the commit first). SQLite
runs WAL with synchronous=NORMAL for stepstream and the in-process AsyncSqliteSaver alike;
PostgreSQL (stepstream and Aegra, one server) keeps its durable defaults. Peak RSS and CPU/run
are the serving processes' (in-process: the process itself; replicas: all of them plus the
sidecars), not PostgreSQL's or Redis's. Ratios: stepstream / the other."""


def render(data: dict[str, Any]) -> str:
    res = Results(data)
    titles = {s["key"]: f"({s['letter']}) {s['title']}" for s in data["scenarios"]}
    lines = ["## Systems side by side", "", *header(data), "", METHOD, "", *headline(data), ""]
    lines += ["Cells that did not run say why in the tables below.", "", "### Aims", "", *aims(res), ""]
    for scenario in ("linear", "mapreduce"):
        if scenario in titles:
            lines += [f"### {titles[scenario]}", "", *cell_table(res, scenario), ""]
            lines += [*ratio_tables(res, scenario), "", f"![{scenario}]({scenario}.png)", ""]
    if "research" in titles:
        lines += [f"### {titles['research']}", "", *research_table(res), ""]
        lines += [
            "The APIs allow 20 requests in any 1 s (a sliding window: no burst, whichever second one",
            "looks at), below what the sessions ask on this machine; stepstream's limits say the same",
            "(bench/limits.toml: `20 per 1s`). API rate used: requests the API admitted (did not refuse",
            "with 429) per second over the window, as a share of its allowed rate (the smaller of the",
            "two APIs). Only stepstream has a shared limiter; the others meet the APIs' limits as 429s,",
            "which the graph honours (Retry-After) and gives up after 3, answering from fewer sources.",
            "",
            "![research](research.png)",
            "",
        ]
    if "soak" in titles:
        lines += [f"### {titles['soak']}", "", *soak_table(res), ""]
        lines += [
            "Each run's node waits on an HTTP request that bench/holdserver.py holds open until every",
            "run waits on it (or none has arrived for 30 s), then releases all: 'most in flight' is",
            "counted by that server.",
            "",
        ]
    return "\n".join(lines)


def summary(data: dict[str, Any]) -> Iterable[str]:
    """The aims table alone (for the README)."""
    return aims(Results(data))
