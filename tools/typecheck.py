"""Run mypy on the hand-written packages under their import names.

The folders map into the `stepstream` namespace only through pyproject's
package-dir, which mypy cannot follow; a tree of symlinks under build/ gives
it the same layout the interpreter sees.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = {
    "cli": "cli",
    "server": "server",
    "ratelimiter": "ratelimiter",
    "client": "clients/python/stepstream_client",
    "mockapi": "mockapi",
    "security": "security",
    "telemetry": "telemetry",
    "v1": "gen/python/stepstream/v1",
}


def main() -> int:
    tree = ROOT / "build" / "typecheck"
    if tree.exists():
        shutil.rmtree(tree)
    pkg = tree / "stepstream"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for name, folder in PACKAGES.items():
        (pkg / name).symlink_to(ROOT / folder, target_is_directory=True)
    targets = [str(pkg / name) for name in PACKAGES if name != "v1"]
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), *targets]
    return subprocess.call(cmd, cwd=tree)


if __name__ == "__main__":
    raise SystemExit(main())
