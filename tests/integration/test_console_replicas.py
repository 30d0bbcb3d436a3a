"""Console sessions across API replicas: the signing keys live in PostgreSQL, shared by all.

Two API replicas (two Applications on their own ports, the same database) with no
`SLIPWAY_CONSOLE_SESSION_KEY`: a session signed in on one works on the other; a
cookie signed with a key the database does not hold is refused by both. Starting
together, replicas agree on one key (the first insert wins); a rotation adds the
next key, which signs once published while the old one still verifies, until
every session it signed has expired and it is deleted.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial

import asyncpg

from services.api.console.db_clock import DatabaseClock
from services.api.console.keyring import PUBLISH_S, Keyring
from services.api.console.session_keys import load_keyring
from services.api.console.sessions import SESSION_TTL_S, SessionCodec
from shared.apikeys import create_api_key
from shared.eventlog import EventStore
from tests.support.api import served_api
from tests.support.console import ConsoleClient, session_keys_aged

DAY = 86400.0


async def test_a_session_from_one_replica_works_on_another_and_a_foreign_key_is_refused(
    store: EventStore, api_pool: asyncpg.Pool
) -> None:
    key = await create_api_key(store, "read-only", "viewer")
    async with (
        served_api(store, api_pool, admin_name="admin-a") as one,
        served_api(store, api_pool, admin_name="admin-b") as two,
    ):
        async with ConsoleClient(one) as browser:
            assert (await browser.sign_in(key)).status == 303
            cookie = browser.session_cookie()
        async with ConsoleClient(two, headers={"Cookie": f"slipway_session={cookie}"}) as other:
            status, html = await other.page("/console/events")
            assert status == 200, html
            assert "viewer (read-only)" in html
        # The same key's session, signed with a key neither replica has: another
        # deployment's fixed key, or a made-up secret under the stored key's number.
        key_id = cookie.split(".")[0]
        for kid in ("e", "1"):
            forged = SessionCodec(Keyring(kid, {kid: b"f" * 32})).issue(key_id, time.time())
            for url in (one, two):
                async with ConsoleClient(url, headers={"Cookie": f"slipway_session={forged}"}) as b:
                    status, _ = await b.page("/console/events")
                    assert status == 303  # back to the sign-in page
    rows = await api_pool.fetch("SELECT kid FROM api_console_session_keys")
    assert [r["kid"] for r in rows] == [1]  # the two replicas share one key


async def test_replicas_starting_together_agree_on_one_key(api_pool: asyncpg.Pool) -> None:
    rings = await asyncio.gather(
        *(load_keyring(api_pool, rotation_s=30 * DAY, clock=DatabaseClock()) for _ in range(4))
    )
    assert {r.signing for r in rings} == {"1"}
    assert len({r.keys["1"] for r in rings}) == 1


async def test_a_rotated_key_signs_once_published_and_the_old_one_verifies_until_it_expires(
    api_pool: asyncpg.Pool, database_url: str, schema: str
) -> None:
    aged = partial(session_keys_aged, database_url, schema)
    clock = DatabaseClock()

    async def read() -> Keyring:
        return await load_keyring(api_pool, rotation_s=30 * DAY, clock=clock)

    codec = SessionCodec(await read())
    # A month on, the next replica to read the table adds key 2; it does not sign yet, so a
    # replica that has not re-read the table yet still understands every new cookie.
    await aged(30 * DAY)
    ring = await read()
    assert ring.signing == "1" and set(ring.keys) == {"1", "2"}
    # The replicas read the keys again when key 2 is published, not a minute later.
    assert PUBLISH_S - 5 < ring.changes_at - clock.now() <= PUBLISH_S
    codec.use(ring)
    last_old = codec.issue("0" * 26, clock.now())  # key 1's, just before key 2 took over
    assert last_old.rsplit(".", 1)[1].startswith("1:")
    await aged(PUBLISH_S)
    codec.use(await read())
    new_session = codec.issue("0" * 26, clock.now())
    assert new_session.rsplit(".", 1)[1].startswith("2:")
    assert codec.read(new_session, clock.now()) is not None
    assert codec.read(last_old, clock.now()) is not None  # key 1 still verifies
    # Once every session key 1 signed has expired, it is deleted.
    await aged(SESSION_TTL_S)
    ring = await read()
    kids = [r["kid"] for r in await api_pool.fetch("SELECT kid FROM api_console_session_keys")]
    assert kids == [2] and set(ring.keys) == {"2"} and ring.signing == "2"
