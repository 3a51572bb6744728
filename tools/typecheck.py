"""Run mypy on the hand-written packages under their import names.

The repository root is the package `stepstream` only through pyproject's
package-dir (clients/python is `stepstream.client`, gen/python/stepstream/v1 is
`stepstream.v1`), which mypy cannot follow; a tree of symlinks under build/
gives it the same layout the interpreter sees.
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
    "client": "clients/python",
    "mockapi": "mockapi",
    "security": "security",
    "telemetry": "telemetry",
    "inspector": "inspector",
    "v1": "gen/python/stepstream/v1",
}
# Module names start at the tree: without this, mypy would crawl on up to the
# repository root's __init__.py and name every module after the checkout's folder.
BASES = ["--explicit-package-bases"]


def main() -> int:
    tree = ROOT / "build" / "typecheck"
    if tree.exists():
        shutil.rmtree(tree)
    pkg = tree / "stepstream"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").symlink_to(ROOT / "__init__.py")
    for name, folder in PACKAGES.items():
        (pkg / name).symlink_to(ROOT / folder, target_is_directory=True)
    targets = [str(pkg / name) for name in PACKAGES if name != "v1"]
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), *BASES, *targets]
    return subprocess.call(cmd, cwd=tree)


if __name__ == "__main__":
    raise SystemExit(main())
