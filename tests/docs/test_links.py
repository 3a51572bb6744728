"""The docs cite only what the repository holds.

Every relative link (`[text](path#anchor)`) and every repository path written in inline
code (`` `deploy/kubernetes/base/` ``) in the user-facing docs must name a file or folder
that exists, and a link's anchor a heading of its target. Paths the .gitignore names
(`build/`, `certs/`, `bench/results/tmp/`) are what commands write, so they may be cited.
Fenced code blocks are left alone: their paths are a reader's own files.
"""

from __future__ import annotations

import fnmatch
import functools
import pathlib
import re
import subprocess
from collections.abc import Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ("README.md", "SECURITY.md", "docs/*.md", "bench/README.md", "clients/*/README*")
# Cited before they land; each is checked as soon as it exists.
PENDING: dict[str, str] = {}

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:, ...


def doc_files() -> list[pathlib.Path]:
    found = {path for pattern in DOCS for path in ROOT.glob(pattern) if path.is_file()}
    return sorted(found)


@functools.cache
def repository_files() -> frozenset[str]:
    """Tracked files and new ones not ignored: what a fresh clone of this tree would hold."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return frozenset(name for name in listed.stdout.split("\0") if name and (ROOT / name).exists())


@functools.cache
def repository_folders() -> frozenset[str]:
    return frozenset(str(parent) for name in repository_files() for parent in pathlib.PurePath(name).parents)


def exists(relative: str) -> bool:
    """Whether a root-relative path (a file, a folder, or a glob) is in the repository."""
    path = relative.rstrip("/") or "."
    if any(char in path for char in "*?["):
        return any(fnmatch.fnmatchcase(name, path) for name in repository_files())
    return path in repository_files() or path in repository_folders()


def ignored(relative: str) -> bool:
    """Whether .gitignore names the path: something a command writes, not a file we ship."""
    check = subprocess.run(["git", "check-ignore", "-q", "--no-index", relative], cwd=ROOT, check=False)
    return check.returncode == 0


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """The lines outside fenced code blocks, numbered from 1."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|__|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: pathlib.Path) -> set[str]:
    seen: dict[str, int] = {}
    out: set[str] = set()
    for _, line in prose_lines(path.read_text()):
        match = HEADING.match(line)
        if match is None:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def to_root(doc: pathlib.Path, target: str) -> str:
    """A path written in doc, relative to the repository root ('' when it leaves the repository)."""
    resolved = (doc.parent / target).resolve()
    try:
        return str(resolved.relative_to(ROOT)) + ("/" if target.endswith("/") else "")
    except ValueError:
        return ""


def link_problems(doc: pathlib.Path) -> Iterator[str]:
    where = doc.relative_to(ROOT)
    for number, line in prose_lines(doc.read_text()):
        for match in LINK.finditer(line):
            target = match.group(1)
            if EXTERNAL.match(target):
                continue
            path_part, _, anchor = target.partition("#")
            if not path_part:
                if anchor not in anchors(doc):
                    yield f"{where}:{number}: link {target!r}: no heading #{anchor} here"
                continue
            relative = to_root(doc, path_part)
            if not relative:
                yield f"{where}:{number}: link {target!r} leaves the repository"
            elif relative in PENDING and not (ROOT / relative).exists():
                continue
            elif not exists(relative):
                yield f"{where}:{number}: link {target!r}: no {relative} in the repository"
            elif anchor and relative.endswith(".md") and anchor not in anchors(ROOT / relative):
                yield f"{where}:{number}: link {target!r}: {relative} has no heading #{anchor}"


def code_paths(text: str) -> Iterator[str]:
    """Words of inline code that read as paths: a slash inside, no scheme, no option or variable."""
    for match in INLINE_CODE.finditer(text):
        for word in match.group(2).split():
            word = word.strip("'\"(),;")
            if "/" not in word or EXTERNAL.match(word) or word.startswith(("-", "$", "~", "/", "<")):
                continue
            # `file.py:attribute`, `path:line` name the file before the colon.
            yield word.split(":", 1)[0]


def code_path_problems(doc: pathlib.Path) -> Iterator[str]:
    where = doc.relative_to(ROOT)
    top_level = {pathlib.PurePath(name).parts[0] for name in repository_files()}
    beside = {path.name for path in doc.parent.iterdir()}
    for number, line in prose_lines(doc.read_text()):
        for word in code_paths(line):
            first = word.split("/", 1)[0]
            if first in top_level:
                relative = word  # written from the repository root, as the docs do
            elif first in beside:
                relative = to_root(doc, word)
            else:
                continue  # not a repository path: a module, a reader's file, a command's ./path
            if relative in PENDING and not (ROOT / relative).exists():
                continue
            if relative and not exists(relative) and not ignored(relative):
                yield f"{where}:{number}: `{word}` is not in the repository"


def test_the_docs_are_found() -> None:
    names = {str(path.relative_to(ROOT)) for path in doc_files()}
    assert {"README.md", "SECURITY.md", "bench/README.md"} <= names
    assert any(name.startswith("docs/") for name in names)


@pytest.mark.parametrize("doc", doc_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_links_name_files_and_headings_that_exist(doc: pathlib.Path) -> None:
    problems = list(link_problems(doc))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", doc_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_paths_in_code_exist(doc: pathlib.Path) -> None:
    problems = list(code_path_problems(doc))
    assert not problems, "\n".join(problems)


def test_the_checker_sees_a_missing_file_a_missing_heading_and_a_missing_path(tmp_path: pathlib.Path) -> None:
    """The checks above can fail: a doc with one broken citation of each kind is caught."""
    # Inside the repository (links resolve against it) but in the ignored build/, where no
    # other run of the suite looks for docs.
    doc = ROOT / "build" / "links-selftest" / f"{tmp_path.name}.md"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(
        "# Title\n\n[ok](../../README.md) [gone](no-such-page.md) [anchor](#title) [bad](#no-such-heading)\n"
        "`server/api/server.py` `server/api/no_such_module.py` `build/anything` `stepstream.client`\n"
        "```\ncat server/not-checked-in-a-fence.py\n```\n"
    )
    try:
        links = list(link_problems(doc))
        paths = list(code_path_problems(doc))
    finally:
        doc.unlink()
    assert len(links) == 2, links
    assert "no-such-page.md" in links[0] and "#no-such-heading" in links[1]
    assert len(paths) == 1 and "server/api/no_such_module.py" in paths[0], paths
