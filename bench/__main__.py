"""`python -m bench [--quick]`: the benchmarks, one markdown report.

- `systems` (bench/harness.py): every scenario on stepstream, in-process
  LangGraph and the peers (LangGraph's own server, Aegra), side by side, with
  the ratios and the aims; also PNG plots. The quick version is `make bench`.
- the component sections (the checkpointer on SQLite and PostgreSQL, scale-out
  on PostgreSQL, the rate limiter, the cost of tracing, of the inspector's live
  overview): each module defines
  `run(quick: bool) -> str`, a markdown section of ratios against a baseline
  measured in the same run. They run in the full version, or alone with
  `--only NAME`.

Each section writes bench/results/NAME.md; bench/results/latest.md joins the
latest of each. A run narrowed with --systems, --scenarios or --clients writes under
bench/results/tmp/ instead, so it never replaces the committed figures, or under
bench/results/SAVE/ with `--save SAVE`, a folder of its own that is kept.
`--repeats N` measures every system N times, interleaved; the report shows medians.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import pathlib
import sys
import time

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
COMPONENTS = ("checkpointer", "checkpointer_postgres", "scaleout", "ratelimiter", "tracing", "inspector")
SECTIONS = ("systems", *COMPONENTS)


def run_systems(
    quick: bool,
    folder: pathlib.Path,
    systems: list[str],
    scenarios: list[str],
    repeats: int = 1,
    clients: list[int] | None = None,
) -> str:
    from bench import harness, plots, report

    data = asyncio.run(
        harness.run(quick, systems or None, scenarios or None, repeats=repeats, clients=clients)
    )
    (folder / "systems.json").write_text(json.dumps(data, indent=1))
    plots.write(data, folder)
    return report.render(data)


def run_component(name: str, quick: bool) -> str:
    module = importlib.import_module(f"bench.{name}")
    stamp = f"_Measured {time.strftime('%Y-%m-%d %H:%M')} ({'quick' if quick else 'full'})._\n\n"
    section: str = module.run(quick)
    heading, _, rest = section.partition("\n")
    return f"{heading}\n\n{stamp}{rest.lstrip()}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="the short version (make bench)")
    parser.add_argument(
        "--only", action="append", default=[], choices=SECTIONS, help="run only these sections"
    )
    parser.add_argument("--systems", default="", help="comma-separated system keys (bench/systems.py)")
    parser.add_argument("--scenarios", default="", help="comma-separated: linear, mapreduce, research, soak")
    parser.add_argument("--render", action="store_true", help="only re-render the report from systems.json")
    parser.add_argument(
        "--repeats", type=int, default=1, help="measure every system this many times, interleaved; medians"
    )
    parser.add_argument("--clients", default="", help="comma-separated client counts for every scenario")
    parser.add_argument(
        "--save", default="", help="write a narrowed run under bench/results/SAVE/ (kept) instead of tmp/"
    )
    args = parser.parse_args()
    sections = args.only or (["systems"] if args.quick else list(SECTIONS))
    narrowed = bool(args.systems or args.scenarios or args.clients)
    folder = RESULTS / args.save if args.save else RESULTS / "tmp" if narrowed else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    if args.render:
        from bench import plots, report

        data = json.loads((folder / "systems.json").read_text())
        plots.write(data, folder)
        (folder / "systems.md").write_text(report.render(data) + "\n")
        sections = []
    for name in sections:
        if name == "systems":
            split = (
                args.systems.split(",") if args.systems else [],
                args.scenarios.split(",") if args.scenarios else [],
            )
            clients = [int(c) for c in args.clients.split(",")] if args.clients else None
            section = run_systems(args.quick, folder, *split, repeats=args.repeats, clients=clients)
        else:
            section = run_component(name, args.quick)
        (folder / f"{name}.md").write_text(section + "\n")
        print(section, flush=True)
    parts = ["# stepstream benchmarks", ""]
    parts += [(folder / f"{n}.md").read_text() for n in SECTIONS if (folder / f"{n}.md").exists()]
    (folder / "latest.md").write_text("\n".join(parts))
    print(f"report written to {folder / 'latest.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
