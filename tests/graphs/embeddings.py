"""A deterministic embedding function for servers whose store has an index (tests only).

A bag of words hashed into DIMS counts, so cosine similarity is the share of words in common.
"""

from __future__ import annotations

import hashlib

DIMS = 64


def embed_words(texts: list[str]) -> list[list[float]]:
    vectors = []
    for text in texts:
        vector = [0.0] * DIMS
        for word in text.lower().replace(",", " ").split():
            vector[int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big") % DIMS] += (
                1.0
            )
        vectors.append(vector)
    return vectors
