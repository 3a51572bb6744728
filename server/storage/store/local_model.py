"""Embeddings from a sentence-transformers model already on disk (the `embeddings` extra).

Never downloads: the model is loaded from a folder with the hub offline, so a
server without the files fails at start-up with a clear message instead of
fetching weights at run time. `pip install 'stepstream[embeddings]'` brings
sentence-transformers (and torch); CI never installs it. In a config:
`"index": {"dims": 384, "embed": "local:/models/all-MiniLM-L6-v2"}`.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
from typing import Any

from langchain_core.embeddings import Embeddings

PREFIX = "local:"


class LocalModelEmbeddings(Embeddings):
    def __init__(self, path: str | os.PathLike[str], device: str = "cpu") -> None:
        folder = pathlib.Path(path).expanduser()
        if not folder.is_dir():
            raise ValueError(f"local embedding model: no model folder at {folder} (it is never downloaded)")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ValueError(
                "local embedding models need the extra: pip install 'stepstream[embeddings]'"
            ) from None
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: no network for the hub
        self._model: Any = SentenceTransformer(str(folder), device=device, local_files_only=True)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors = self._model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
        return [[float(x) for x in v] for v in vectors]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        # The model computes on the CPU: off the event loop.
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return (await self.aembed_documents([text]))[0]
