"""API replicas whose clocks differ by minutes agree on the console's session keys.

Replicas on one database, one's clock 3 minutes behind, another's 3 minutes ahead (the
`clock` each is given). A key's age, when it is due for rotation, when a new one starts
signing and when a replaced one is deleted are all judged on the database's clock
(`console/session_keys.py`), so no replica signs with a key another has not read yet, none
deletes a key whose sessions are still fresh, and none keeps a deleted key's. The time
travel moves the stored keys into the past (`session_keys_aged`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from functools import partial

import asyncpg
import structlog
from aiohttp import web

from services.api.console.db_clock import DatabaseClock
from services.api.console.keyring import PUBLISH_S, Keyring
from services.api.console.session_keys import load_keyring, refresh_keys
from services.api.console.sessions import SESSION_TTL_S, SessionCodec
from shared.apikeys import create_api_key
from shared.eventlog import EventStore
from shared.testing import wait_until
from tests.support.api import served_api
from tests.support.console import ConsoleClient, session_keys_aged

SKEW_S = 180.0
DAY = 86400.0


def behind() -> float:
    return time.time() - SKEW_S


def ahead() -> float:
    return time.time() + SKEW_S


def _kid(cookie: str) -> str:
    return cookie.rsplit(".", 1)[1].partition(":")[0]


async def test_a_replica_ahead_signs_with_no_key_a_replica_on_time_has_not_read(
    store: EventStore, api_pool: asyncpg.Pool, database_url: str, schema: str
) -> None:
    """A replica behind stores the next key as it starts; one ahead starts right after. On
    their own clocks the new key had been published for minutes, and the one ahead would
    sign with it at once, while the replica on time, which has not re-read the table yet,
    would refuse every such cookie."""
    aged = partial(session_keys_aged, database_url, schema)
    key = await create_api_key(store, "read-only", "viewer")
    with structlog.testing.capture_logs() as logged:
        async with served_api(store, api_pool, admin_name="on-time") as on_time:
            await aged(30 * DAY + 2 * SKEW_S)  # key 1 is due for rotation, by any clock here
            async with (
                served_api(store, api_pool, admin_name="behind", clock=behind) as slow,
                served_api(store, api_pool, admin_name="ahead", clock=ahead) as fast,
            ):
                kids = [
                    r["kid"]
                    for r in await api_pool.fetch("SELECT kid FROM api_console_session_keys")
                ]
                assert kids == [1, 2]  # stored by the replica behind, as it started
                for url in (slow, fast):
                    async with ConsoleClient(url) as browser:
                        assert (await browser.sign_in(key)).status == 303
                        cookie = browser.session_cookie()
                    for other in (on_time, slow, fast):
                        headers = {"Cookie": f"slipway_session={cookie}"}
                        async with ConsoleClient(other, headers=headers) as browser:
                            status, html = await browser.page("/console/events")
                            assert status == 200, (url, other, html)
                    assert _kid(cookie) == "1", url  # key 2 is published in two minutes
    warned = sorted(
        e["ahead_s"] for e in logged if e["event"] == "console_clock_off_from_the_database"
    )
    assert len(warned) == 2 and abs(warned[0] + SKEW_S) < 2 and abs(warned[1] - SKEW_S) < 2


async def test_replicas_minutes_apart_switch_keys_and_drop_the_old_one_together(
    api_pool: asyncpg.Pool, database_url: str, schema: str
) -> None:
    """Each read is a replica's re-read of the table; both read at (nearly) the same moment
    and must see the same keyring: before and after the new key is published, and before
    and after the old one's last session ends."""
    aged = partial(session_keys_aged, database_url, schema)
    slow, fast = DatabaseClock(behind), DatabaseClock(ahead)

    async def both() -> list[Keyring]:
        return [await load_keyring(api_pool, rotation_s=30 * DAY, clock=c) for c in (slow, fast)]

    await both()
    await aged(30 * DAY + 2 * SKEW_S)  # key 1 is due for rotation, by any clock here
    rings = await both()  # the replica behind stored key 2
    assert [(r.signing, set(r.keys)) for r in rings] == [("1", {"1", "2"})] * 2
    # Key 1's last cookie, signed just before key 2 takes over.
    last_old = SessionCodec(rings[0]).issue("0" * 26, slow.now())
    await aged(PUBLISH_S - 5)
    rings = await both()
    assert [r.signing for r in rings] == ["1", "1"]
    await aged(5)
    rings = await both()
    assert [(r.signing, set(r.keys)) for r in rings] == [("2", {"1", "2"})] * 2
    # Key 1's sessions have 5 s to go (by the database's time): it still verifies on both.
    await aged(SESSION_TTL_S - 5)
    rings = await both()
    assert [set(r.keys) for r in rings] == [{"1", "2"}] * 2
    for ring, clock in zip(rings, (slow, fast), strict=True):
        assert SessionCodec(ring).read(last_old, clock.now()) is not None
    # Now they have all ended: key 1 is deleted, and verifies nowhere.
    await aged(5)
    rings = await both()
    assert [set(r.keys) for r in rings] == [{"2"}] * 2
    kids = [r["kid"] for r in await api_pool.fetch("SELECT kid FROM api_console_session_keys")]
    assert kids == [2]


@contextlib.asynccontextmanager
async def refreshing(api_pool: asyncpg.Pool, codec: SessionCodec) -> AsyncIterator[None]:
    """A replica's re-reading of the keys (`refresh_keys`), as its Application runs it."""
    context = refresh_keys(api_pool, codec, rotation_s=30 * DAY, clock=DatabaseClock())
    running = context(web.Application())
    await anext(running)
    try:
        yield
    finally:
        with contextlib.suppress(StopAsyncIteration):
            await anext(running)


async def test_a_replica_reads_the_keys_again_when_the_new_one_is_published(
    api_pool: asyncpg.Pool, database_url: str, schema: str
) -> None:
    """Not at its next minute's re-read: at the moment (the database's) the new key starts
    signing, every replica at once."""
    aged = partial(session_keys_aged, database_url, schema)
    await load_keyring(api_pool, rotation_s=30 * DAY, clock=DatabaseClock())
    await aged(30 * DAY + 1)
    await load_keyring(api_pool, rotation_s=30 * DAY, clock=DatabaseClock())  # stores key 2
    await aged(PUBLISH_S - 1.0)  # published in a second
    codec = SessionCodec(Keyring())
    async with refreshing(api_pool, codec):
        assert _kid(codec.issue("0" * 26, time.time())) == "1"
        await wait_until(
            lambda: _kid(codec.issue("0" * 26, time.time())) == "2",
            within_s=10,
            what="the replica signing with key 2",
        )
