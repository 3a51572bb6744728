"""A folder is its import name, and every package folder is listed in pyproject.toml.

`stepstream.X` is the folder X/ (the repository root is the package `stepstream`),
the SDK `stepstream.client` is clients/python/, and only the generated
`stepstream.v1` lives elsewhere, in gen/python/.
"""

from __future__ import annotations

import os
import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Not the repository's own code (besides dot-folders: environments, caches): build output, node packages.
NOT_CODE = {"build", "node_modules"}
TOOL = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
LISTED: set[str] = set(TOOL["packages"])
PACKAGE_DIR: dict[str, str] = TOOL["package-dir"]


def folder_of(package: str) -> pathlib.Path:
    """The folder setuptools takes `package` from: the longest mapped prefix, then one folder a part."""
    parts = package.split(".")
    for cut in range(len(parts), 0, -1):
        mapped = PACKAGE_DIR.get(".".join(parts[:cut]))
        if mapped is not None:
            return ROOT.joinpath(mapped, *parts[cut:]).resolve()
    raise AssertionError(f"{package} is outside every package-dir entry")


def test_the_rule_has_one_named_exception() -> None:
    assert PACKAGE_DIR == {
        "stepstream": ".",
        "stepstream.client": "clients/python",
        "stepstream.v1": "gen/python/stepstream/v1",
    }
    for package in LISTED:
        assert (folder_of(package) / "__init__.py").is_file(), f"{package} has no {folder_of(package)}"
    assert "DO NOT EDIT" not in (ROOT / "__init__.py").read_text(), "the root package is hand-written"


def test_every_package_folder_is_listed() -> None:
    found = set()
    for package in LISTED - {"stepstream"}:  # the root's other folders (tests, bench, ...) ship apart
        base = folder_of(package)
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            found.add(".".join([package, *rel.parts]))
    missing = found - LISTED
    assert not missing, f"add to [tool.setuptools] packages: {sorted(missing)}"


def test_no_folder_shadows_an_import_name() -> None:
    """A Python folder named `stepstream` elsewhere would give a module path a second, hidden file."""
    shadows = []
    for folder, subfolders, _ in os.walk(ROOT):
        subfolders[:] = [d for d in subfolders if not d.startswith(".") and d not in NOT_CODE]
        here = pathlib.Path(folder)
        python = any(here.rglob("*.py"))  # protos/stepstream and the other languages' folders are not
        if here.name == "stepstream" and python and here != ROOT / "gen" / "python" / "stepstream":
            shadows.append(str(here.relative_to(ROOT)))
    assert not shadows, f"folders that shadow the stepstream package: {shadows}"
