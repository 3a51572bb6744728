"""The contract passes `buf lint` (the @bufbuild/buf npm package, DESIGN §9)."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
BUF = ["-y", "@bufbuild/buf", "lint"]


def _buf_lint(folder: pathlib.Path) -> subprocess.CompletedProcess[str]:
    npx = shutil.which("npx")
    if npx is None:
        pytest.fail("npx is not on PATH: install Node.js (npx) to run `buf lint` on protos/")
    return subprocess.run([npx, *BUF], cwd=folder, capture_output=True, text=True, timeout=600, check=False)


def test_protos_pass_buf_lint() -> None:
    result = _buf_lint(PROTOS)
    assert result.returncode == 0, (
        f"`npx -y @bufbuild/buf lint` in {PROTOS} exited {result.returncode}:\n"
        f"{result.stdout}\n{result.stderr}"
    )


def test_buf_lint_reports_a_violation(tmp_path: pathlib.Path) -> None:
    """The check above can fail: the same buf.yaml refuses a badly named message."""
    shutil.copy(PROTOS / "buf.yaml", tmp_path / "buf.yaml")
    bad = tmp_path / "stepstream" / "v1" / "bad.proto"
    bad.parent.mkdir(parents=True)
    bad.write_text('syntax = "proto3";\n\npackage stepstream.v1;\n\nmessage bad_name {\n  string x = 1;\n}\n')
    result = _buf_lint(tmp_path)
    assert result.returncode != 0, f"buf lint accepted a violation:\n{result.stdout}\n{result.stderr}"
    assert "bad_name" in result.stdout + result.stderr
