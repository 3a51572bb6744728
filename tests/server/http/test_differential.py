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
ACCEPTED: dict[str, tuple[str, ...]] = {
    "langgraph-dev": (),
    "stepstream": (
        # Every stream carries event ids (`<seq>-<frame>`, docs/http-api.md), resumable or not:
        # every event is stored, so any stream can be rejoined.
        r"\.id: expected null, got \"N-N\"",
        # LangGraph's server answers with ids of its own (request ids, in configs and metadata)
        # before the ones both servers share, so the placeholders number differently from there
        # on; where both hold an id the transcripts agree on which id it is.
        r"expected \"[^\"]*<(uuid|hex):\d+>[^\"]*\", got \"[^\"]*<(uuid|hex):\d+>[^\"]*\"$",
        r"\.call: expected \"[^\"]*<uuid:\d+>",
        # Run kwargs echo LangGraph's server internals (auth user, request id and start time,
        # durability, webhook); ours echo what the run was given.
        r"\.kwargs\.",
        # Configs and metadata of LangGraph's server carry its deployment (langgraph_api_url,
        # langgraph_host, plan, versions), request and auth keys, and the LangSmith keys of the
        # model (ls_*): a stepstream run has none of these.
        r"\.(configurable|metadata|data\[1\])\.(langgraph_(api_url|api_version|host|plan|version|request_id|auth_\w+|triggers)|__\w+|user_id|lc_versions|ls_\w+|run_attempt|thread_id|run_id|created_by|assistant_id|graph_id|checkpoint_ns|langgraph_checkpoint_ns|langgraph_node|langgraph_step|langgraph_path|scenario)",
        r"\.triggers: \d+ items expected",
        # A run that can execute at once is `running` when its creation answers (LangGraph's
        # server queues every run first).
        r"\.status: expected \"pending\", got \"running\"",
        # The langchain-core of LangGraph's pinned venv suffixes a streamed message's id with -0.
        r"\.id: expected \"lc_run--<uuid:\d+>-0\"",
        # Error details are ours (the status codes agree).
        r"\.body\.detail: expected",
        r"GET /threads/<uuid:\d+>/runs/<uuid:\d+>/stream\]\.body: expected",
        # Threads in search results are whole threads (error, interrupts, config) as `get` gives.
        r"\.result\[\d+\]\.(error|interrupts|config\.configurable): unexpected",
        # Interrupts carry LangGraph 1.x's response_schema field; the pinned server omits it.
        r"response_schema: unexpected null",
        # Checkpoint references carry checkpoint_map (null at the root); LangGraph's server also
        # repeats checkpoint_id and parent_checkpoint_id at the top of a state.
        r"checkpoint_map: unexpected null",
        r"\.(checkpoint_id|parent_checkpoint_id): missing",
        # Assistants are listed by graph id; LangGraph's server by creation order.
        r"assistants\.search\]\.result\[\d+\]\.(graph_id|name|assistant_id)",
        # The graph name is accepted wherever an assistant id is, GET /assistants/{name} too.
        r"assistants\.get by graph name\]\.(body|result|status)",
        # Node ids inside a drawn graph's data are LangGraph's internal runnable names.
        r"\.nodes\[\d+\]\.data\.id:",
        # Context schemas and saved assistants are served once the core offers them (issue 23);
        # the state schema of a typing.TypedDict state is {} on Python 3.11, whose TypedDict
        # pydantic refuses (LangGraph's venv runs 3.12).
        r"assistants\.get_schemas remember\]",
        # An unranked store search lists the most recently updated items first, as LangGraph's
        # PostgreSQL store does; `langgraph dev`'s in-memory store lists them as inserted.
        r"store\.search_items( [^\]]*)?\]\.result\.items\[\d+\]\.(key|namespace\[\d+\]|value\.\w+): expected",
        # A refused namespace is a 422 like any refusal, `{"detail": ...}`; LangGraph's server
        # answers this one with the bare message.
        r"PUT /store/items\]\.body: expected \"Namespace label",
        # A rolled-back run stays listed, `interrupted`, its work dropped; LangGraph's server
        # deletes it.
        r"multitask_rollback: \[\d+ runs\.(get first|list)\]",
        # A thread's `error` is not kept (the run's is, on the run).
        r"\.result\.error: expected \{\"error\": \"UserInterrupt\"",
        r"checkpoint\.checkpoint_ns: unexpected \"\"",
        # A whole thread on get (config, error, interrupts, values), as for any other thread.
        r"threads\.get copy\]\.result\.(config\.configurable|error|interrupts|values): unexpected",
        # The copy of a thread with work left (its state updated as a node) is `interrupted` as
        # the thread itself is; LangGraph's server calls the fresh copy idle.
        r"threads\.get copy\]\.result\.status: expected \"idle\", got \"interrupted\"",
        r"get_subgraphs nested\]\.result\.child\.state_schema",
    ),
}
# Scenarios a server cannot run yet, with the reason (their transcripts stay the reference).
UNSERVED: dict[str, dict[str, str]] = {}


def test_every_scenario_has_a_reference_transcript() -> None:
    assert sorted(load(TRANSCRIPTS)) == sorted(SCENARIOS)


def test_recording_reproduces_the_reference_transcripts(http_server: HttpServer) -> None:
    unserved = UNSERVED.get(http_server.name, {})
    names = [n for n in SCENARIOS if n not in unserved]
    got = record_server(http_server, names)
    accepted = [re.compile(p) for p in ACCEPTED.get(http_server.name, ())]
    reference = {n: steps for n, steps in load(TRANSCRIPTS).items() if n in names}
    differences = [d for d in compare(reference, got, limit=10_000) if not any(p.search(d) for p in accepted)]
    assert not differences, f"{http_server.name} differs from the reference:\n" + "\n".join(differences)
