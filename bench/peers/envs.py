"""The peers' own environments: a venv each under build/peers, made on first use from pinned lists.

A venv is reused while its requirements file is unchanged (the file's hash is
stamped inside it). Nothing of the peers is ever part of the repository.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BUILD = ROOT / "build" / "peers"
REQUIREMENTS = {"langgraph-server": HERE / "langgraph-server.txt", "aegra": HERE / "aegra.txt"}
INSTALL_TIMEOUT_S = 900


class PeerUnavailable(RuntimeError):
    """A peer that cannot run here; the message says why, for the report."""


def venv_dir(name: str) -> pathlib.Path:
    return BUILD / name / "venv"


def _stamp(requirements: pathlib.Path) -> str:
    return hashlib.sha256(requirements.read_bytes()).hexdigest()


def base_python() -> str:
    """The interpreter this venv was made from (a venv made from a venv would chain them)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def ensure(name: str) -> pathlib.Path:
    """The venv of peer `name`, installed if missing or stale; PeerUnavailable if that fails."""
    requirements = REQUIREMENTS[name]
    venv = venv_dir(name)
    stamp_file = venv / ".requirements-sha256"
    wanted = _stamp(requirements)
    if stamp_file.exists() and stamp_file.read_text() == wanted:
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = venv.parent / "install.log"
    steps = [
        [base_python(), "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(requirements)],
    ]
    with log.open("w") as out:
        for step in steps:
            try:
                done = subprocess.run(
                    step, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S, env=_pip_env()
                )
            except subprocess.TimeoutExpired:
                raise PeerUnavailable(f"installing {name} took over {INSTALL_TIMEOUT_S} s") from None
            if done.returncode != 0:
                tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
                raise PeerUnavailable(f"could not install {name} from PyPI: {tail[0][:160]} (see {log})")
    stamp_file.write_text(wanted)
    return venv


def _pip_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    return env
