"""Semantic-search configuration: LangGraph's `IndexConfig`, the embedder it names, the texts to embed.

`embed` may be a LangChain `Embeddings`, a sync or async function from texts
to vectors, or a string: "local:/path/to/model" is a sentence-transformers
model on disk (local_model.py), "package.module:attr" or "path/to/file.py:attr"
is imported (the attribute may be any of the former), anything else is handed to
LangChain's provider strings ("openai:text-embedding-3-small"), which need
LangChain and the provider's package.
"""

from __future__ import annotations

import importlib
import importlib.util
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.embeddings import Embeddings
from langgraph.store.base import IndexConfig, PutOp, ensure_embeddings, get_text_at_path, tokenize_path

from stepstream.server.storage.store import local_model

WHOLE_ITEM = "$"


@dataclass(frozen=True)
class Index:
    """A resolved index configuration."""

    dims: int
    embeddings: Embeddings
    # (path as written, its tokens); "$" is the whole item.
    fields: tuple[tuple[str, list[str] | str], ...]


def _load_attr(spec: str) -> Any | None:
    """The object "module:attr" or "file.py:attr" names; None when `spec` names no importable module."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        return None
    if target.endswith(".py"):
        path = pathlib.Path(target).expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"index.embed {spec!r}: no file {path}")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        if module_spec is None or module_spec.loader is None:
            raise ValueError(f"index.embed {spec!r}: cannot load {path} as a module")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            if exc.name and target.startswith(exc.name):
                return None  # a provider string such as "openai:text-embedding-3-small"
            raise
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"index.embed {spec!r}: module {target!r} has no attribute {attr!r}") from None


def resolve_embeddings(embed: Any) -> Embeddings:
    if embed is None:
        raise ValueError('index.embed is required: an Embeddings, a function, or "module:attr"')
    if isinstance(embed, str) and embed.startswith(local_model.PREFIX):
        return local_model.LocalModelEmbeddings(embed.removeprefix(local_model.PREFIX))
    if isinstance(embed, str):
        loaded = _load_attr(embed)
        if loaded is not None:
            embed = loaded() if isinstance(loaded, type) else loaded
    return ensure_embeddings(embed)


def tokenized(paths: Sequence[str]) -> tuple[tuple[str, list[str] | str], ...]:
    return tuple((p, p if p == WHOLE_ITEM else tokenize_path(p)) for p in paths)


def resolve(config: IndexConfig | Mapping[str, Any] | None) -> Index | None:
    if not config:
        return None
    dims = config.get("dims")
    if not isinstance(dims, int) or isinstance(dims, bool) or dims <= 0:
        raise ValueError(f"index.dims must be a positive integer, got {dims!r}")
    fields = config.get("fields") or [WHOLE_ITEM]
    if isinstance(fields, str) or not all(isinstance(f, str) for f in fields):
        raise ValueError(f"index.fields must be a list of paths, got {fields!r}")
    return Index(dims, resolve_embeddings(config.get("embed")), tokenized(list(fields)))


def texts_to_embed(index: Index, op: PutOp) -> list[tuple[str, str]]:
    """(field name, text) pairs of a put: the op's own `index` paths, else the configured ones.

    A path that reaches several texts gives one field per text, named "path.i".
    """
    if op.value is None or op.index is False:
        return []
    paths = index.fields if op.index is None else tokenized(op.index)
    out: list[tuple[str, str]] = []
    for name, tokens in paths:
        texts = get_text_at_path(op.value, tokens)
        if len(texts) == 1:
            out.append((name, texts[0]))
        else:
            out.extend((f"{name}.{i}", text) for i, text in enumerate(texts))
    return out


def check_vectors(index: Index, vectors: Sequence[Sequence[float]], expected: int) -> None:
    if len(vectors) != expected:
        raise ValueError(f"the embedding function returned {len(vectors)} vectors for {expected} texts")
    for vector in vectors:
        if len(vector) != index.dims:
            raise ValueError(
                f"the embedding function returned a vector of {len(vector)} dimensions; "
                f"index.dims is {index.dims}"
            )
