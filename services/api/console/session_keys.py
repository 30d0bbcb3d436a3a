"""The console's session keys in PostgreSQL (`api_console_session_keys`), shared by replicas.

The first replica to start finds the table empty and stores key 1; the others'
inserts of the same number do nothing (`ON CONFLICT DO NOTHING`), and everyone
reads back the one that won. Rotation is the same race for the next number,
run when the newest key is older than the rotation period. Every replica
re-reads the table each `REFRESH_S` (`keyring.py` says which key signs when),
and deletes keys no session can carry any more. The secrets never leave the
database and the API's memory: they are not events (the log is kept forever).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Final

import asyncpg
from aiohttp import web

from services.api.console.keyring import REFRESH_S, Keyring, StoredKey, keyring_of, retired
from services.api.console.sessions import SESSION_TTL_S, SessionCodec
from shared.logs import get_logger

__all__ = ["DEFAULT_ROTATION_S", "load_keyring", "refresh_keys"]

log = get_logger(__name__)

DEFAULT_ROTATION_S: Final = 30 * 86400
"""A new signing key each month; 0 keeps the first one."""

_READ: Final = (
    "SELECT kid, secret, extract(epoch FROM created_at)::float8 AS created_at"
    " FROM api_console_session_keys ORDER BY kid"
)
_ADD: Final = (
    "INSERT INTO api_console_session_keys (kid, secret, created_at)"
    " VALUES ($1, $2, to_timestamp($3)) ON CONFLICT (kid) DO NOTHING"
)


async def _stored(conn: asyncpg.Connection) -> list[StoredKey]:
    return [
        StoredKey(r["kid"], bytes(r["secret"]), r["created_at"]) for r in await conn.fetch(_READ)
    ]


async def load_keyring(pool: asyncpg.Pool, *, rotation_s: float, now: float) -> Keyring:
    """The keyring every replica shares: adds the first key, or the next one when the newest
    is older than `rotation_s` (0: never), and forgets keys whose sessions have all ended."""
    async with pool.acquire() as conn:
        stored = await _stored(conn)
        newest = stored[-1] if stored else None
        if newest is None or (rotation_s > 0 and now - newest.created_at >= rotation_s):
            kid = newest.kid + 1 if newest else 1
            await conn.execute(_ADD, kid, secrets.token_bytes(32), now)
            stored = await _stored(conn)
            log.info("console_session_key_added", kid=kid, keys=len(stored))
        old = retired(stored, now, SESSION_TTL_S)
        if old:
            await conn.execute("DELETE FROM api_console_session_keys WHERE kid = ANY($1)", old)
    return keyring_of(stored, now, SESSION_TTL_S)


def refresh_keys(
    pool: asyncpg.Pool, codec: SessionCodec, *, rotation_s: float, clock: Callable[[], float]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A `cleanup_ctx` for the API's Application: loads the keys before the first request
    (the API does not start without them), then re-reads them every `REFRESH_S`."""

    async def load() -> None:
        codec.use(await load_keyring(pool, rotation_s=rotation_s, now=clock()))

    async def loop() -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            try:
                await load()
            except (OSError, asyncpg.PostgresError) as exc:
                # The keys in hand stay good for far longer than the database's hiccup.
                log.warning("console_session_keys_not_refreshed", error=str(exc))

    async def context(_app: web.Application) -> AsyncIterator[None]:
        await load()
        task = asyncio.create_task(loop(), name="console-session-keys")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return context
