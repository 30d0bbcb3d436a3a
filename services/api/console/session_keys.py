"""The console's session keys in PostgreSQL (`api_console_session_keys`), shared by replicas.

The first replica to start finds the table empty and stores key 1; the others'
inserts of the same number do nothing (`ON CONFLICT DO NOTHING`), and everyone
reads back the one that won. Rotation is the same race for the next number,
run when the newest key is older than the rotation period. Every replica
re-reads the table each `REFRESH_S`, and at the moment the keyring changes (a
key starts signing or stops verifying: `keyring.py` says when), and deletes
keys no session can carry any more. The secrets never leave the database and
the API's memory: they are not events (the log is kept forever).

Every decision here is on the database's clock (`db_clock`), never a
replica's: a key is stored with `clock_timestamp()`, and whether the newest is
due for rotation, which key signs, which verify and which may go are judged
against the database's time read with the keys. Replicas whose clocks differ
by minutes agree on all of it, so none signs with a key another has not read
yet, and none deletes a key another's fresh cookie still names.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Final

import asyncpg
from aiohttp import web

from services.api.console.db_clock import DatabaseClock
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
_NOW: Final = "SELECT extract(epoch FROM clock_timestamp())::float8"
"""The database's time, read after the keys: every key's `created_at` is before it."""
_ADD: Final = (
    "INSERT INTO api_console_session_keys (kid, secret, created_at)"
    " VALUES ($1, $2, clock_timestamp()) ON CONFLICT (kid) DO NOTHING"
)
_RETRY_S: Final = 5.0
"""After a failed re-read, the next try (the keys in hand are still good meanwhile)."""


async def _stored(conn: asyncpg.Connection) -> tuple[list[StoredKey], float]:
    """The stored keys, and the database's time just after reading them."""
    rows = await conn.fetch(_READ)
    keys = [StoredKey(r["kid"], bytes(r["secret"]), r["created_at"]) for r in rows]
    now: float = await conn.fetchval(_NOW)
    return keys, now


async def load_keyring(pool: asyncpg.Pool, *, rotation_s: float, clock: DatabaseClock) -> Keyring:
    """The keyring every replica shares at the database's time (handed to `clock`): adds the
    first key, or the next one when the newest is older than `rotation_s` (0: never), and
    forgets keys whose sessions have all ended."""
    async with pool.acquire() as conn:
        stored, now = await _stored(conn)
        newest = stored[-1] if stored else None
        if newest is None or (rotation_s > 0 and now - newest.created_at >= rotation_s):
            kid = newest.kid + 1 if newest else 1
            await conn.execute(_ADD, kid, secrets.token_bytes(32))
            stored, now = await _stored(conn)
            log.info("console_session_key_added", kid=kid, keys=len(stored))
        old = retired(stored, now, SESSION_TTL_S)
        if old:
            await conn.execute("DELETE FROM api_console_session_keys WHERE kid = ANY($1)", old)
    clock.saw(now)
    return keyring_of(stored, now, SESSION_TTL_S)


def refresh_keys(
    pool: asyncpg.Pool, codec: SessionCodec, *, rotation_s: float, clock: DatabaseClock
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A `cleanup_ctx` for the API's Application: loads the keys before the first request
    (the API does not start without them), then re-reads them every `REFRESH_S`, and when
    the keyring in hand changes (`Keyring.changes_at`, on the database's clock)."""
    ring = Keyring()

    async def load() -> None:
        nonlocal ring
        ring = await load_keyring(pool, rotation_s=rotation_s, clock=clock)
        codec.use(ring)

    async def loop() -> None:
        while True:
            await asyncio.sleep(min(REFRESH_S, max(ring.changes_at - clock.now(), 0.0)))
            try:
                await load()
            except (OSError, asyncpg.PostgresError) as exc:
                # The keys in hand stay good for far longer than the database's hiccup.
                log.warning("console_session_keys_not_refreshed", error=str(exc))
                await asyncio.sleep(_RETRY_S)

    async def context(_app: web.Application) -> AsyncIterator[None]:
        await load()
        task = asyncio.create_task(loop(), name="console-session-keys")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return context
