"""Issue and rotate a tenant's webhook signing secret, straight on the database (operators)."""

from __future__ import annotations

import time

from stepstream.server.core.schedules import signing
from stepstream.server.storage.db import create_engine
from stepstream.server.storage.schedules import add_secret, secrets_in_force


class SecretExists(Exception):
    """The tenant already has a current secret: rotate it instead."""


async def issue_secret(db_url: str, tenant: str, rotate: bool, overlap_seconds: float) -> str:
    """A new current secret for `tenant`. Rotating, the old one keeps signing for the overlap."""
    secret = signing.new_secret()
    now = time.time()
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            stored = await conn.run_sync(
                lambda c: add_secret(c, tenant, secret, now, now + overlap_seconds if rotate else None)
            )
    finally:
        await engine.dispose()
    if not stored:
        raise SecretExists(f"tenant {tenant!r} already has a signing secret; rotate it instead")
    return secret


async def secrets_of(db_url: str, tenant: str) -> list[tuple[str, float | None]]:
    """(secret, expiry or None for the current one), newest first."""
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            found = await conn.run_sync(lambda c: secrets_in_force(c, tenant, time.time()))
    finally:
        await engine.dispose()
    return [(s.secret, s.expires_at) for s in found]
