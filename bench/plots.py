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


METRICS = (
    ("runs_per_s", "runs/s"),
    ("p50_ms", "p50 end-to-end ms"),
    ("first_event_p50_ms", "p50 first event ms"),
)


def scenario_figure(res: Results, scenario: str, title: str, out: pathlib.Path) -> None:
    clients = res.concurrencies(scenario)
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    if len(clients) == 1:
        # One client count: a bar per system.
        keys = [k for k in res.systems(scenario) if res.value(k, scenario, clients[0], "runs_per_s")]
        for axis, (field, name) in zip(axes, METRICS, strict=True):
            values = [res.value(k, scenario, clients[0], field) or 0.0 for k in keys]
            axis.barh([res.labels[k] for k in keys], values)
            axis.set_xscale("log")
            axis.set_xlabel(f"{name}, {clients[0]} clients")
            if axis is not axes[0]:
                axis.set_yticks([])
    else:
        for key in res.systems(scenario):
            style = STYLE.get(res.families[key], "-")
            for axis, (field, _) in zip(axes, METRICS, strict=True):
                xs, ys = _series(res, scenario, key, field)
                if xs:
                    axis.plot(xs, ys, style, marker="o", label=res.labels[key])
        for axis, (_, name) in zip(axes, METRICS, strict=True):
            axis.set_xscale("log")
            axis.set_yscale("log")
            axis.set_xticks(clients, [str(c) for c in clients])
            axis.minorticks_off()
            axis.set_xlabel("clients")
            axis.set_ylabel(name)
            axis.grid(True, alpha=0.3)
        axes[0].legend(fontsize=7)
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
