"""Build the inspector's bundle: `python -m stepstream.inspector.bundle [OUT]` (`make inspector`).

inspector/web/ is installed from its lockfile (`npm ci`, pinned esbuild and TypeScript), type
checked (`tsc`, the bundler itself only strips types) and bundled by esbuild into OUT (default:
inspector/static/, the committed copy): index.html, app.js, app.css. The same sources give the
same bytes, which tests/inspector/test_bundle.py checks against the committed bundle.

A development tool: it needs Node.js and the repository's protos/toolchain.py, unlike the page.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

from stepstream.inspector import STATIC

WEB = pathlib.Path(__file__).resolve().parent / "web"
ROOT = WEB.parents[1]
# Every esbuild flag that shapes the output: no source maps, no banner, no license comments
# (the packages' licenses are in inspector/web/node_modules), one IIFE with no import at run time.
ESBUILD_JS = [
    "--bundle",
    "--minify",
    "--format=iife",
    "--platform=browser",
    "--target=es2022",
    "--jsx=automatic",
    "--jsx-import-source=preact",
    "--legal-comments=none",
    "--charset=utf8",
    "--log-level=warning",
]
ESBUILD_CSS = ["--bundle", "--minify", "--charset=utf8", "--log-level=warning"]


def _run(command: list[str]) -> None:
    done = subprocess.run(command, cwd=WEB, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:2])} failed in {WEB}:\n{(done.stdout + done.stderr)[-3000:]}")


def build(out: pathlib.Path = STATIC) -> pathlib.Path:
    """Type-check and bundle the page into `out` (created); returns `out`."""
    sys.path.insert(0, str(ROOT / "protos"))
    import toolchain  # the repository's pinned-npm helper (protos/toolchain.py)

    bin_dir = toolchain.npm_ci(WEB)
    _run([str(bin_dir / "tsc"), "-p", str(WEB)])
    out.mkdir(parents=True, exist_ok=True)
    _run([str(bin_dir / "esbuild"), "src/main.tsx", *ESBUILD_JS, f"--outfile={out / 'app.js'}"])
    _run([str(bin_dir / "esbuild"), "src/app.css", *ESBUILD_CSS, f"--outfile={out / 'app.css'}"])
    shutil.copyfile(WEB / "index.html", out / "index.html")
    return out


if __name__ == "__main__":
    built = build(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else STATIC)
    for file in sorted(built.iterdir()):
        print(f"{file}: {file.stat().st_size} bytes")
