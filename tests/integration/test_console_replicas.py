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

import asyncpg

from services.api.console.keyring import PUBLISH_S, Keyring
from services.api.console.session_keys import load_keyring
from services.api.console.sessions import SESSION_TTL_S, SessionCodec
from shared.apikeys import create_api_key
from shared.eventlog import EventStore
from tests.support.api import served_api
from tests.support.console import ConsoleClient

DAY = 86400.0


def _session(browser: ConsoleClient) -> str:
    return next(c.value for c in browser.http.cookie_jar if c.key == "slipway_session")


async def test_a_session_from_one_replica_works_on_another_and_a_foreign_key_is_refused(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    key = await create_api_key(store, "read-only", "viewer")
    async with (
        served_api(store, pool, admin_name="admin-a") as one,
        served_api(store, pool, admin_name="admin-b") as two,
    ):
        async with ConsoleClient(one) as browser:
            assert (await browser.sign_in(key)).status == 303
            cookie = _session(browser)
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
    rows = await pool.fetch("SELECT kid FROM api_console_session_keys")
    assert [r["kid"] for r in rows] == [1]  # the two replicas share one key


async def test_replicas_starting_together_agree_on_one_key(pool: asyncpg.Pool) -> None:
    now = time.time()
    rings = await asyncio.gather(
        *(load_keyring(pool, rotation_s=30 * DAY, now=now) for _ in range(4))
    )
    assert {r.signing for r in rings} == {"1"}
    assert len({r.keys["1"] for r in rings}) == 1


async def test_a_rotated_key_signs_once_published_and_the_old_one_verifies_until_it_expires(
    pool: asyncpg.Pool,
) -> None:
    now = time.time()
    first = SessionCodec(await load_keyring(pool, rotation_s=30 * DAY, now=now))
    old_session = first.issue("0" * 26, now)
    # A month on, the next replica to read the table adds key 2; it does not sign yet, so a
    # replica that has not re-read the table yet still understands every new cookie.
    later = now + 30 * DAY + 1
    codec = SessionCodec(await load_keyring(pool, rotation_s=30 * DAY, now=later))
    assert old_session.rsplit(".", 1)[1].startswith("1:")
    assert codec.issue("0" * 26, later).rsplit(".", 1)[1].startswith("1:")
    published = later + PUBLISH_S + 1
    codec.use(await load_keyring(pool, rotation_s=30 * DAY, now=published))
    new_session = codec.issue("0" * 26, published)
    assert new_session.rsplit(".", 1)[1].startswith("2:")
    assert codec.read(new_session, published) is not None
    # A session key 1 signed just before key 2 took over still verifies.
    last_old = SessionCodec(await load_keyring(pool, rotation_s=30 * DAY, now=later)).issue(
        "0" * 26, later
    )
    assert codec.read(last_old, published) is not None
    # Once every session key 1 signed has expired, it is deleted.
    gone = published + SESSION_TTL_S + 1
    ring = await load_keyring(pool, rotation_s=30 * DAY, now=gone)
    kids = [r["kid"] for r in await pool.fetch("SELECT kid FROM api_console_session_keys")]
    assert kids == [2] and set(ring.keys) == {"2"} and ring.signing == "2"
