"""`python -m stepstream.ratelimiter`: the sidecar alone, without the rest of the CLI."""

from __future__ import annotations

import typer

from stepstream.ratelimiter.cli import ratelimiter

if __name__ == "__main__":
    typer.run(ratelimiter)
