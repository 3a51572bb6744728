"""The committed generated code is what `make protos` makes from protos/ now."""

from __future__ import annotations

import filecmp
import pathlib
import runpy

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_generated_code_is_current(tmp_path: pathlib.Path) -> None:
    generate = runpy.run_path(str(ROOT / "protos" / "generate.py"))["generate"]
    generate(tmp_path)
    fresh = tmp_path / "stepstream" / "v1"
    committed = ROOT / "gen" / "python" / "stepstream" / "v1"
    names = sorted(p.name for p in fresh.iterdir())
    assert names == sorted(p.name for p in committed.iterdir() if p.name != "__pycache__"), (
        "generated files differ: run `make protos`"
    )
    _, mismatch, errors = filecmp.cmpfiles(fresh, committed, names, shallow=False)
    assert not mismatch and not errors, f"stale generated code {mismatch + errors}: run `make protos`"
