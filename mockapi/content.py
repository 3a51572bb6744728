"""Deterministic search results: the same query always gives the same pages and papers.

Results are derived from a hash of the query, so tests and the demo can check an
answer against what the API returned without storing any corpus, and the titles
contain the query terms, as real search hits do.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import re
from dataclasses import dataclass

_FIELDS = (
    "physics", "biology", "computing", "mathematics", "economics", "linguistics",
    "chemistry", "medicine", "philosophy", "engineering", "astronomy", "music",
)  # fmt: skip
_WIKI_TITLES = (
    "{Q}", "History of {q}", "{Q} in {field}", "Outline of {q}", "{Q} ({field})",
    "Applications of {q}", "Timeline of {q}", "{Q} theory", "List of {q} topics", "Philosophy of {q}",
)  # fmt: skip
_PAPER_TITLES = (
    "{Adj} {method} for {q}", "On the {noun} of {q}", "{Q}: a survey", "Towards {adj} {q}",
    "Learning {q} with {method}", "A note on {q} and {field}", "Revisiting {q}", "{Q} at scale",
)  # fmt: skip
_ADJS = ("scalable", "robust", "efficient", "provable", "adaptive", "sparse", "stochastic", "unified")
_METHODS = ("transformers", "graph networks", "variational inference", "spectral methods",
            "Monte Carlo sampling", "convex relaxations", "diffusion models", "kernel methods")  # fmt: skip
_NOUNS = ("stability", "complexity", "geometry", "limits", "structure", "dynamics", "universality")
_AUTHORS = ("A. Rivera", "B. Okafor", "C. Lindqvist", "D. Nakamura", "E. Petrov", "F. Haddad",
            "G. Moreau", "H. Chen", "I. Kowalski", "J. Mensah", "K. Iyer", "L. Fischer")  # fmt: skip
_CATEGORIES = ("cs.LG", "cs.CL", "cs.DC", "math.PR", "stat.ML", "quant-ph", "physics.soc-ph", "q-bio.NC")
# Field prefixes (all:, ti:, au:, ...) and boolean operators of arXiv's query syntax.
_ARXIV_SYNTAX = re.compile(r"\b[a-z]{2,3}:|\bAND(?:NOT)?\b|\bOR\b|[()\"]")


@dataclass(frozen=True)
class WikiPage:
    title: str
    pageid: int
    snippet: str
    size: int
    wordcount: int
    timestamp: str


@dataclass(frozen=True)
class Paper:
    arxiv_id: str
    title: str
    summary: str
    authors: tuple[str, ...]
    published: str
    category: str


def _digest(*parts: object) -> int:
    """A stable 64-bit number for the parts (unlike hash(), the same in every process)."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _pick(options: tuple[str, ...], *parts: object) -> str:
    return options[_digest(*parts) % len(options)]


def normalise(query: str) -> str:
    """Collapse whitespace and case, so trivially different spellings share results."""
    return " ".join(query.lower().split())


def arxiv_terms(search_query: str) -> str:
    """The plain words of an arXiv query such as `all:graph AND ti:"neural nets"`."""
    return normalise(_ARXIV_SYNTAX.sub(" ", search_query))


def feed_id(query: str) -> str:
    """An opaque id for an arXiv result feed, as arXiv gives one per query."""
    return f"{_digest('feed', arxiv_terms(query)):016x}"


def total_hits(query: str, source: str) -> int:
    return 40 + _digest(source, "total", normalise(query)) % 4000


def _fill(template: str, q: str, key: tuple[object, ...]) -> str:
    return template.format(
        q=q,
        Q=q[:1].upper() + q[1:],
        field=_pick(_FIELDS, *key, "field"),
        adj=_pick(_ADJS, *key, "adj"),
        Adj=_pick(_ADJS, *key, "adj").capitalize(),
        method=_pick(_METHODS, *key, "method"),
        noun=_pick(_NOUNS, *key, "noun"),
    )


def wiki_page(query: str, index: int) -> WikiPage:
    """The `index`-th hit for `query` (0-based), the same on every call."""
    q = normalise(query)
    key = ("wikipedia", q, index)
    title = _fill(_WIKI_TITLES[index % len(_WIKI_TITLES)], q, key)
    if index >= len(_WIKI_TITLES):  # keep titles unique past the first round of templates
        title = f"{title} ({_pick(_FIELDS, *key, 'round')} {index // len(_WIKI_TITLES)})"
    marked = f'<span class="searchmatch">{html.escape(q)}</span>'
    snippet = (
        f"{marked} is a topic studied in {_pick(_FIELDS, *key, 'snippet')}; "
        f"this article covers the {_pick(_NOUNS, *key, 'noun')} of {marked} and related ideas"
    )
    size = 2_000 + _digest(*key, "size") % 120_000
    stamp = dt.datetime(2015, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=_digest(*key, "ts") % 300_000_000)
    return WikiPage(
        title=title,
        pageid=1_000 + _digest(*key, "pageid") % 70_000_000,
        snippet=snippet,
        size=size,
        wordcount=size // 7,
        timestamp=stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def paper(query: str, index: int) -> Paper:
    """The `index`-th paper for an arXiv `search_query` (0-based), the same on every call."""
    q = arxiv_terms(query) or "everything"
    key = ("arxiv", q, index)
    title = _fill(_PAPER_TITLES[index % len(_PAPER_TITLES)], q, key)
    if index >= len(_PAPER_TITLES):
        title = f"{title}, part {index // len(_PAPER_TITLES) + 1}"
    published = dt.datetime(2008, 1, 1, tzinfo=dt.UTC) + dt.timedelta(
        seconds=_digest(*key, "published") % 530_000_000
    )
    n_authors = 1 + _digest(*key, "n_authors") % 4
    authors = tuple(_pick(_AUTHORS, *key, "author", i) for i in range(n_authors))
    summary = (
        f"We study {q} from the point of view of {_pick(_METHODS, *key, 'summary')}. "
        f"Our analysis establishes the {_pick(_NOUNS, *key, 'noun')} of {q} and shows "
        f"{_pick(_ADJS, *key, 'result')} behaviour on benchmarks drawn from {_pick(_FIELDS, *key, 'field')}."
    )
    number = _digest(*key, "number") % 100_000
    return Paper(
        arxiv_id=f"{published:%y%m}.{number:05d}",
        title=title,
        summary=summary,
        authors=authors,
        published=published.strftime("%Y-%m-%dT%H:%M:%SZ"),
        category=_pick(_CATEGORIES, *key, "category"),
    )
