"""Which interpreter each peer's venv is made from."""

from __future__ import annotations

import pathlib
import subprocess

import pytest

from bench.peers import envs


def test_a_peer_without_a_minimum_uses_the_bench_interpreter() -> None:
    assert "langgraph-server" not in envs.MIN_PYTHON
    assert envs.interpreter("langgraph-server") == envs.base_python()


def test_aegra_gets_a_python_new_enough_or_says_why() -> None:
    least = envs.MIN_PYTHON["aegra"]
    try:
        python = envs.interpreter("aegra")
    except envs.PeerUnavailable as exc:
        assert f"Python >= {least[0]}.{least[1]}" in str(exc)
        return
    done = subprocess.run(
        [python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True, text=True
    )
    major, minor = map(int, done.stdout.split())
    assert (major, minor) >= least


def test_an_interpreter_that_does_not_run_has_no_version(tmp_path: pathlib.Path) -> None:
    failing = tmp_path / "python3.99"
    failing.write_text("#!/bin/sh\nexit 127\n")
    failing.chmod(0o755)
    assert envs._version(str(failing)) is None
    assert envs._version(str(tmp_path / "missing")) is None


@pytest.mark.parametrize("name", sorted(envs.REQUIREMENTS))
def test_every_peer_pins_every_package(name: str) -> None:
    lines = [
        line for line in envs.REQUIREMENTS[name].read_text().splitlines() if line and not line.startswith("#")
    ]
    assert lines and all("==" in line for line in lines), name
