"""The committed bundle (inspector/static/) is what its sources build to, byte for byte: a change
to inspector/web/ without `make inspector` fails here (and so in CI)."""

from __future__ import annotations

import pathlib

import pytest

from stepstream.inspector import STATIC
from stepstream.inspector.bundle import build

pytestmark = pytest.mark.timeout(600)


def test_the_committed_bundle_is_rebuilt_identically(tmp_path: pathlib.Path) -> None:
    built = build(tmp_path / "static")
    names = sorted(p.name for p in built.iterdir())
    assert names == ["app.css", "app.js", "index.html"]
    assert names == sorted(p.name for p in STATIC.iterdir()), "inspector/static/ holds other files"
    stale = [name for name in names if (built / name).read_bytes() != (STATIC / name).read_bytes()]
    assert not stale, f"inspector/static/{stale} differ from a fresh build: run `make inspector` and commit"


def test_the_bundle_needs_nothing_from_outside() -> None:
    # One script and one stylesheet, both relative: the page works offline and under /ui/.
    html = (STATIC / "index.html").read_text()
    assert 'src="app.js"' in html and 'href="app.css"' in html
    for name in ("index.html", "app.js", "app.css"):
        text = (STATIC / name).read_text()
        assert "http://" not in text.replace("http://www.w3.org", ""), name
        assert "https://" not in text, name
