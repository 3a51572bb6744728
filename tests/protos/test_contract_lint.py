"""The contract passes `buf lint` and `buf breaking` (the @bufbuild/buf npm package, DESIGN §9).

buf is pinned by protos/package-lock.json. `buf breaking` compares protos/ with
protos/ of the previous commit (in CI: the commit main was at before this
change; STEPSTREAM_CONTRACT_BASE names another git revision), so a change that
breaks v1 clients fails the build.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
sys.path.insert(0, str(PROTOS))
import toolchain  # noqa: E402


def buf(*args: str, cwd: pathlib.Path = ROOT) -> subprocess.CompletedProcess[str]:
    try:
        binary = toolchain.buf()
    except toolchain.ToolchainMissing as missing:
        pytest.fail(f"{missing}: buf is installed from protos/package.json with npm ci")
    return subprocess.run(
        [str(binary), *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def base_revision() -> str:
    """The commit to compare with; a shallow clone is deepened by one commit to have it."""
    revision = os.environ.get("STEPSTREAM_CONTRACT_BASE", "HEAD~1")
    if git("rev-parse", "--verify", "-q", f"{revision}^{{commit}}").returncode != 0:
        if git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
            git("fetch", "-q", "--deepen=1")
        if git("rev-parse", "--verify", "-q", f"{revision}^{{commit}}").returncode != 0:
            pytest.fail(
                f"git revision {revision} is not in this clone: fetch more history "
                "(git fetch --deepen=1) or name the base with STEPSTREAM_CONTRACT_BASE"
            )
    return revision


def protos_at(revision: str, into: pathlib.Path) -> pathlib.Path:
    """protos/ as it was at a git revision, extracted under `into`."""
    archive = into / "protos.tar"
    with archive.open("wb") as out:
        result = subprocess.run(
            ["git", "archive", revision, "protos"], cwd=ROOT, stdout=out, stderr=subprocess.PIPE, check=False
        )
    if result.returncode != 0:
        pytest.fail(f"git archive {revision} protos: {result.stderr.decode()}")
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "protos"


def test_protos_pass_buf_lint() -> None:
    result = buf("lint", cwd=PROTOS)
    assert result.returncode == 0, (
        f"`buf lint` in {PROTOS} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )


def test_buf_lint_reports_a_violation(tmp_path: pathlib.Path) -> None:
    """The check above can fail: the same buf.yaml refuses a badly named message."""
    shutil.copy(PROTOS / "buf.yaml", tmp_path / "buf.yaml")
    bad = tmp_path / "stepstream" / "v1" / "bad.proto"
    bad.parent.mkdir(parents=True)
    bad.write_text('syntax = "proto3";\n\npackage stepstream.v1;\n\nmessage bad_name {\n  string x = 1;\n}\n')
    result = buf("lint", cwd=tmp_path)
    assert result.returncode != 0, f"buf lint accepted a violation:\n{result.stdout}\n{result.stderr}"
    assert "bad_name" in result.stdout + result.stderr


def test_protos_do_not_break_the_previous_commit() -> None:
    revision = base_revision()
    with tempfile.TemporaryDirectory() as tmp:
        before = protos_at(revision, pathlib.Path(tmp))
        result = buf("breaking", "protos", "--against", str(before))
    assert result.returncode == 0, (
        f"protos/ breaks the contract of {revision} (v1 clients depend on it; add, never change):\n"
        f"{result.stdout}\n{result.stderr}"
    )


def test_buf_breaking_reports_a_deleted_field(tmp_path: pathlib.Path) -> None:
    """The check above can fail: deleting Run.last_seq is reported against the protos of now."""
    changed = tmp_path / "protos"
    shutil.copytree(PROTOS, changed, ignore=shutil.ignore_patterns("node_modules", "*.py", "package*.json"))
    runs = changed / "stepstream" / "v1" / "runs.proto"
    text = runs.read_text()
    assert "  uint64 last_seq = 9;\n" in text
    runs.write_text(text.replace("  uint64 last_seq = 9;\n", ""))
    result = buf("breaking", str(changed), "--against", str(PROTOS))
    assert result.returncode != 0, f"buf breaking accepted a deleted field:\n{result.stdout}"
    assert 'field "9" with name "last_seq" on message "Run" was deleted' in result.stdout + result.stderr
