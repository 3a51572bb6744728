"""PNG figures of the systems benchmark (matplotlib, no display needed)."""

from __future__ import annotations

import pathlib
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.report import Results, api_use

STYLE = {"stepstream": "-", "peer": "--", "langgraph": ":"}


def _series(res: Results, scenario: str, key: str, field: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for c in res.concurrencies(scenario):
        value = res.value(key, scenario, c, field)
        if value is not None:
            xs.append(c)
            ys.append(value)
    return xs, ys


def scenario_figure(res: Results, scenario: str, title: str, out: pathlib.Path) -> None:
    fig, (left, mid, right) = plt.subplots(1, 3, figsize=(16, 5))
    for key in res.systems(scenario):
        style = STYLE.get(res.families[key], "-")
        for axis, field in ((left, "runs_per_s"), (mid, "p50_ms"), (right, "first_event_p50_ms")):
            xs, ys = _series(res, scenario, key, field)
            if xs:
                axis.plot(xs, ys, style, marker="o", label=res.labels[key])
    for axis, name in ((left, "runs/s"), (mid, "p50 end-to-end ms"), (right, "p50 time to first event ms")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("clients")
        axis.set_ylabel(name)
        axis.grid(True, alpha=0.3)
    mid.set_yscale("log")
    right.set_yscale("log")
    left.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def research_figure(res: Results, title: str, out: pathlib.Path) -> None:
    rows: list[tuple[str, float, int]] = []
    top = max(res.concurrencies("research"), default=0)
    for key in res.systems("research"):
        r = res.ok(key, "research", top)
        if r is not None:
            share, refused = api_use(r)
            rows.append((res.labels[key], (share or 0.0) * 100, refused))
    if not rows:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5))
    names = [r[0] for r in rows]
    left.barh(names, [r[1] for r in rows])
    left.axvline(95, color="grey", linestyle="--")
    left.set_xlabel("% of the APIs' allowed rate used")
    right.barh(names, [r[2] for r in rows], color="tab:red")
    right.set_xlabel("HTTP 429s from the APIs")
    right.set_yticks([])
    fig.suptitle(f"{title}, {top} clients")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def write(data: dict[str, Any], folder: pathlib.Path) -> list[pathlib.Path]:
    res = Results(data)
    titles = {s["key"]: f"({s['letter']}) {s['title']}" for s in data["scenarios"]}
    written = []
    for scenario in ("linear", "mapreduce"):
        if scenario in titles:
            path = folder / f"{scenario}.png"
            scenario_figure(res, scenario, titles[scenario], path)
            written.append(path)
    if "research" in titles:
        path = folder / "research.png"
        research_figure(res, titles["research"], path)
        written.append(path)
    return written
