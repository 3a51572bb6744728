"""Pages of a list: their size, and the opaque token that says where the next one starts."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from stepstream.server.core.errors import InvalidArgument

# The largest page any list gives (the request limits hold the same bound).
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50


def encode_page_token(*key: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode()


def decode_page_token(token: str) -> list[Any]:
    try:
        key = orjson.loads(base64.urlsafe_b64decode(token.encode()))
    except Exception:
        raise InvalidArgument("page_token", "is not a token this server issued") from None
    # (created_at, id): typed as the columns, since PostgreSQL drivers refuse a mismatched parameter.
    if (
        not isinstance(key, list)
        or len(key) != 2
        or isinstance(key[0], bool)
        or not isinstance(key[0], (int, float))
        or not isinstance(key[1], str)
    ):
        raise InvalidArgument("page_token", "is not a token this server issued")
    key[0] = float(key[0])
    return key


def page_size(requested: int) -> int:
    if requested > MAX_PAGE_SIZE:
        raise InvalidArgument("page_size", f"must be at most {MAX_PAGE_SIZE}")
    return requested or DEFAULT_PAGE_SIZE
