"""The differential recorder against a live server reproduces the committed transcripts.

Against `langgraph dev` this proves the normalisation is stable (run after run, nothing but ids
and clocks differ); against stepstream's HTTP door it is the differential test: every
difference left must be listed in ACCEPTED with its reason.
"""

from __future__ import annotations

import re

import pytest

from tests.server.http.differential import TRANSCRIPTS, record_server
from tests.server.http.scenarios import SCENARIOS
from tests.server.http.servers import HttpServer
from tests.server.http.transcript import compare, load

pytestmark = [pytest.mark.process, pytest.mark.timeout(300)]

# Differences a server may show from the reference, as regexes of compare()'s lines, each with
# its reason. LangGraph's own server may show none.
ACCEPTED: dict[str, tuple[str, ...]] = {"langgraph-dev": ()}


def test_every_scenario_has_a_reference_transcript() -> None:
    assert sorted(load(TRANSCRIPTS)) == sorted(SCENARIOS)


def test_recording_reproduces_the_reference_transcripts(http_server: HttpServer) -> None:
    got = record_server(http_server)
    accepted = [re.compile(p) for p in ACCEPTED.get(http_server.name, ())]
    differences = [d for d in compare(load(TRANSCRIPTS), got) if not any(p.search(d) for p in accepted)]
    assert not differences, f"{http_server.name} differs from the reference:\n" + "\n".join(differences)
