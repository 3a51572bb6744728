"""The inspector: a web page served at /ui/ on the HTTP listener (docs/inspector.md).

Its source is inspector/web/ (Preact + TypeScript); the bundle built from it is committed under
static/ and shipped as package data, so serving the page needs no Node.js.
"""

from __future__ import annotations

import pathlib

STATIC = pathlib.Path(__file__).resolve().parent / "static"
