"""Differential recorder: the same langgraph_sdk calls against two LangGraph-API servers, compared.

`record(url)` runs every scenario of tests/server/http/scenarios.py against the server at `url`
(each on threads of its own, side by side) and returns its normalised transcripts
(tests/server/http/transcript.py says what normalising keeps and what it sets aside).
`compare(reference, new)` lists every difference. The transcripts recorded from LangGraph's own
server (`langgraph dev`, pinned in bench/peers/langgraph-server.txt) are committed under
tests/server/http/transcripts/ as the reference stepstream's HTTP door must match.

Regenerate them (starts `langgraph dev` on a free loopback port, ~1 minute; builds its venv under
build/peers on first use):

    .venv/bin/python -m tests.server.http.differential record

Compare a running server with them (exit status 1 if anything differs):

    .venv/bin/python -m tests.server.http.differential check --url http://127.0.0.1:PORT

Print what they show, one line per call (event names in order, status codes):

    .venv/bin/python -m tests.server.http.differential summary
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import sys
import tempfile
from typing import Any

import httpx
from langgraph_sdk import get_client

from tests.server.http.scenarios import SCENARIOS
from tests.server.http.servers import HttpServer, langgraph_dev
from tests.server.http.transcript import Recorder, compare, load, save, summarise

TRANSCRIPTS = pathlib.Path(__file__).resolve().parent / "transcripts"
# Scenarios at once: enough to overlap the server's waits, few enough for two cores.
PARALLEL = 6
SCENARIO_TIMEOUT_S = 60.0

Transcripts = dict[str, list[dict[str, Any]]]

__all__ = ["TRANSCRIPTS", "compare", "load", "record", "record_server", "save"]


async def record(
    url: str, headers: dict[str, str] | None = None, names: list[str] | None = None
) -> Transcripts:
    """The normalised transcript of each scenario (all of them unless `names`) against `url`."""
    gate = asyncio.Semaphore(PARALLEL)

    async def one(name: str) -> tuple[str, list[dict[str, Any]]]:
        async with gate, httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
            client = get_client(url=url, headers=headers)
            recorder = Recorder(name, http)
            try:
                await asyncio.wait_for(SCENARIOS[name](client, recorder), SCENARIO_TIMEOUT_S)
            except Exception as exc:
                raise RuntimeError(f"scenario {name} failed against {url}: {exc!r}") from exc
            finally:
                await client.aclose()
            return name, recorder.steps

    chosen = names or list(SCENARIOS)
    return dict(await asyncio.gather(*(one(name) for name in chosen)))


def record_server(server: HttpServer, names: list[str] | None = None) -> Transcripts:
    return asyncio.run(record(server.url, server.headers, names))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=("record", "check", "summary"))
    parser.add_argument("--url", help="a running server (default: start langgraph dev)")
    parser.add_argument("--api-key", help="sent as x-api-key")
    parser.add_argument("--out", type=pathlib.Path, default=TRANSCRIPTS)
    parser.add_argument("scenarios", nargs="*", help="only these (default: all)")
    args = parser.parse_args(argv)
    headers = {"x-api-key": args.api_key} if args.api_key else {}
    names = args.scenarios or None
    if args.action == "summary":
        for name, steps in load(args.out).items():
            if names is None or name in names:
                print(f"== {name}\n  " + "\n  ".join(summarise(steps)))
        return 0
    if args.url:
        got = asyncio.run(record(args.url, headers, names))
    else:
        with tempfile.TemporaryDirectory() as tmp, langgraph_dev(pathlib.Path(tmp)) as server:
            got = record_server(server, names)
    if args.action == "record":
        save(got, args.out, only=names is not None)
        print(f"{len(got)} transcripts written to {args.out}")
        return 0
    reference = load(args.out)
    differences = compare({n: reference[n] for n in got if n in reference} if names else reference, got)
    print("\n".join(differences) or f"{len(got)} transcripts match {args.out}")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
