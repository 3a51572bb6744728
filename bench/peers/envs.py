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
# The least Python a peer's pinned release runs on, where that is above the bench's own: Aegra
# 0.11 declares `requires-python >= 3.12` (its code uses 3.12's syntax), while stepstream and the
# bench run on 3.11. LangGraph's server stays on the bench's interpreter: its venv also holds
# the langgraph-sdk load client every HTTP server is driven by, and one interpreter for that
# client keeps the three servers' client costs alike.
MIN_PYTHON: dict[str, tuple[int, int]] = {"aegra": (3, 12)}
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


def _version(python: str) -> tuple[int, int] | None:
    """The interpreter's (major, minor), or None if it does not run (a pyenv shim of a version
    not selected fails)."""
    try:
        done = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = done.stdout.split()
    return (int(parts[0]), int(parts[1])) if done.returncode == 0 and len(parts) == 2 else None


def _candidates(least: tuple[int, int]) -> list[str]:
    """Interpreters that may be `least` or newer: pythonX.Y on PATH, then pyenv's versions."""
    found = [p for minor in range(least[1], 20) if (p := shutil.which(f"python{least[0]}.{minor}"))]
    pyenv_root = pathlib.Path(os.environ.get("PYENV_ROOT", pathlib.Path.home() / ".pyenv"))
    found += [str(p) for p in sorted((pyenv_root / "versions").glob(f"{least[0]}.*/bin/python{least[0]}"))]
    return found


def interpreter(name: str) -> str:
    """The interpreter peer `name`'s venv is made from; PeerUnavailable if none here is new enough."""
    least = MIN_PYTHON.get(name)
    if least is None or sys.version_info[:2] >= least:
        return base_python()
    for candidate in _candidates(least):
        version = _version(candidate)
        if version is not None and version >= least:
            return candidate
    wanted = ".".join(map(str, least))
    raise PeerUnavailable(f"{name} needs Python >= {wanted} and no python{wanted} (or newer) was found")


def ensure(name: str) -> pathlib.Path:
    """The venv of peer `name`, installed if missing or stale; PeerUnavailable if that fails."""
    requirements = REQUIREMENTS[name]
    venv = venv_dir(name)
    stamp_file = venv / ".requirements-sha256"
    python = interpreter(name)
    # A venv from another interpreter is stale too.
    wanted = _stamp(requirements) if python == base_python() else f"{_stamp(requirements)} {python}"
    if stamp_file.exists() and stamp_file.read_text() == wanted:
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = venv.parent / "install.log"
    steps = [
        [python, "-m", "venv", str(venv)],
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
