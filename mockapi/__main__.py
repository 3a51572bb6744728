"""`python -m stepstream.mockapi`: the `stepstream mockapi` verb without loading the rest of the CLI.

MockApiProcess starts the mock API this way, so it does not depend on the
server's or limiter's modules importing cleanly.
"""

from __future__ import annotations

import typer

from stepstream.mockapi.cli import mockapi

if __name__ == "__main__":
    typer.run(mockapi)
