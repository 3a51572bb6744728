"""`python -m bench [--quick]`: run every benchmark and print one markdown report.

Each module in BENCHMARKS defines `run(quick: bool) -> str`, returning a
markdown section whose figures are ratios against a baseline measured in the
same run. The report is also written to bench/results/latest.md.
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import time

BENCHMARKS = (
    "bench.serving",
    "bench.checkpointer",
    "bench.checkpointer_postgres",
    "bench.scaleout",
    "bench.ratelimiter",
    "bench.tracing",
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="the short version (make bench)")
    parser.add_argument("--only", action="append", default=[], help="run only these modules")
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    sections = [f"# stepstream benchmarks\n\n{time.strftime('%Y-%m-%d %H:%M')} ({mode})\n"]
    for name in BENCHMARKS:
        if args.only and name.split(".")[-1] not in args.only:
            continue
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        section = module.run(args.quick)
        print(section, flush=True)
        sections.append(section)
    out = pathlib.Path(__file__).parent / "results" / "latest.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(sections))
    print(f"report written to {out}")


if __name__ == "__main__":
    main()
