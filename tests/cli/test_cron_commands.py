"""`stepstream crons ...` against a live server: next fire times shown, fires listed."""

from __future__ import annotations

import time

import pytest

from tests.client.test_client_sdk import cli

pytestmark = pytest.mark.process


def test_cron_verbs(server_address: str) -> None:
    made = cli(server_address, "crons", "create", "*/1 * * * * *", "--graph", "linear", "--input", '{"x": 1}')
    assert made.returncode == 0, made.stderr
    cron_id = made.stdout.split()[1]
    assert made.stdout.count("next: ") == 5

    fires = ""
    for _ in range(100):
        fires = cli(server_address, "crons", "fires", cron_id).stdout
        if "\tran\t" in fires:
            break
        time.sleep(0.2)
    assert fires.splitlines()[0].split("\t") == ["due", "outcome", "run", "detail"]
    assert "\tran\tcron." in fires

    listed = cli(server_address, "crons", "list").stdout
    assert any(line.startswith(cron_id + "\t") and "\tactive\t" in line for line in listed.splitlines())
    paused = cli(server_address, "crons", "pause", cron_id)
    assert paused.returncode == 0 and "paused" in paused.stdout and "next: " not in paused.stdout
    resumed = cli(server_address, "crons", "resume", cron_id)
    assert resumed.stdout.count("next: ") == 5
    updated = cli(server_address, "crons", "update", cron_id, "3600", "--graph", "linear")
    assert updated.returncode == 0 and "every 3600 s" in updated.stdout, updated.stderr
    shown = cli(server_address, "crons", "get", cron_id)
    assert "every 3600 s" in shown.stdout and shown.stdout.count("next: ") == 5
    assert cli(server_address, "crons", "delete", cron_id).returncode == 0
    gone = cli(server_address, "crons", "get", cron_id)
    assert gone.returncode == 1 and gone.stderr.startswith("error: NOT_FOUND")

    bad = cli(server_address, "crons", "create", "* * *", "--graph", "linear")
    assert bad.returncode == 1 and "spec.cron" in bad.stderr
