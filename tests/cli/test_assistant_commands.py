"""`stepstream assistants ...` and `stepstream run --context/--assistant` against a live server."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.client.test_client_sdk import cli

pytestmark = pytest.mark.process


def test_run_with_a_context_and_a_bad_one(server_address: str) -> None:
    done = cli(
        server_address, "run", "context", "--input", "{}", "--context", '{"user": "ann", "tone": "loud"}'
    )
    assert done.returncode == 0, done.stderr
    assert '"ann/loud/3"' in done.stdout
    bad = cli(server_address, "run", "context", "--input", "{}", "--context", '{"user": "ann", "tone": "x"}')
    assert bad.returncode == 1 and bad.stderr.startswith("error: INVALID_ARGUMENT:")
    assert "context_json.tone" in bad.stderr
    not_object = cli(server_address, "run", "context", "--context", "[1]")
    assert not_object.returncode == 2 and "--context" in not_object.stderr


def test_assistant_verbs_and_a_run_as_an_assistant(server_address: str) -> None:
    tag = uuid.uuid4().hex
    made = cli(
        server_address,
        "assistants",
        "create",
        "context",
        "--name",
        "cli bot",
        "--config",
        '{"model": "m1"}',
        "--context",
        '{"user": "cli"}',
        "--metadata",
        json.dumps({"tag": tag}),
    )
    assert made.returncode == 0, made.stderr
    assistant_id = made.stdout.split()[1]
    assert "version 1" in made.stdout and '{"model":"m1"}' in made.stdout

    updated = cli(server_address, "assistants", "update", assistant_id, "--config", '{"model": "m2"}')
    assert updated.returncode == 0 and "version 2" in updated.stdout, updated.stderr
    versions = cli(server_address, "assistants", "versions", assistant_id)
    assert [line.split("\t")[0] for line in versions.stdout.splitlines()] == ["version", "2", "1"]
    back = cli(server_address, "assistants", "set-version", assistant_id, "1")
    assert back.returncode == 0 and '{"model":"m1"}' in back.stdout
    listed = cli(server_address, "assistants", "list", "--metadata", json.dumps({"tag": tag}))
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()[1:]] == [assistant_id]

    ran = cli(
        server_address, "run", assistant_id, "--assistant", "--input", "{}", "--context", '{"limit": 2}'
    )
    assert ran.returncode == 0, ran.stderr
    assert '"cli/plain/2"' in ran.stdout and '"model": "m1"' in ran.stdout

    shown = cli(server_address, "assistants", "show", "context")
    assert shown.returncode == 0 and "(the graph's default)" in shown.stdout
    kept = cli(server_address, "assistants", "delete", "context")
    assert kept.returncode == 1 and kept.stderr.startswith("error: FAILED_PRECONDITION:")
    deleted = cli(server_address, "assistants", "delete", assistant_id)
    assert deleted.returncode == 0 and assistant_id in deleted.stdout
    gone = cli(server_address, "assistants", "show", assistant_id)
    assert gone.returncode == 1 and gone.stderr.startswith("error: NOT_FOUND:")
