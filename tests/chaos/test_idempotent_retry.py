"""Idempotent retry after the connection drops at commit, against a real PostgreSQL.

A proxy between asyncpg and the server cuts the connection either just after
forwarding the message that commits (the server commits, the client never
hears back) or just before it (the transaction is lost). Either way the client
cannot tell which happened; it retries the same append — same event ids, same
expected version — and the log must end up holding each event exactly once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Literal
from urllib.parse import urlsplit

import asyncpg
import pytest

from shared.db import CONNECTION_ERRORS, connect
from shared.errors import Unavailable
from shared.eventlog import NO_STREAM, AppendResult, EventStore, new_events
from shared.events import NewEvent
from shared.events.catalog import ApplicationDisabled, ApplicationRegistered
from shared.ids import new_id
from tests.support.tcp_proxy import PostgresCutProxy, query_contains, sync_after_executing

When = Literal["before", "after"]
CUTS: list[tuple[When, bool]] = [("after", True), ("before", False)]
"""(where the proxy cuts relative to the committing message, whether the append lands)."""
TIMEOUT = 10.0


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[PostgresCutProxy]:
    """A cutting proxy in front of the session's PostgreSQL."""
    upstream = urlsplit(database_url)
    assert upstream.hostname is not None and upstream.port is not None
    async with PostgresCutProxy(upstream.hostname, upstream.port) as proxy:
        yield proxy


async def _stream_with_one_event(store: EventStore) -> tuple[str, str]:
    app = new_id()
    stream = f"application-{app}"
    registered = ApplicationRegistered(
        application_id=app, name="web", repository_id="r1", path="web/prd"
    )
    await store.append(stream, new_events([registered]), expected_version=NO_STREAM)
    return stream, app


async def _stored(pool: asyncpg.Pool, batch: list[NewEvent]) -> dict[uuid.UUID, list[int]]:
    """Every global position at which each of the batch's event ids is stored."""
    rows = await pool.fetch(
        "SELECT event_id, global_position FROM events WHERE event_id = ANY($1::uuid[])",
        [e.event_id for e in batch],
    )
    found: dict[uuid.UUID, list[int]] = {}
    for row in rows:
        found.setdefault(row["event_id"], []).append(row["global_position"])
    return found


async def _assert_stored_exactly_once(
    store: EventStore, stream: str, batch: list[NewEvent], retried: AppendResult
) -> None:
    stored = await _stored(store.pool, batch)
    assert {event_id: len(at) for event_id, at in stored.items()} == {e.event_id: 1 for e in batch}
    assert retried.global_positions == tuple(stored[e.event_id][0] for e in batch)
    history = await store.read_stream(stream)
    assert [r.stream_version for r in history] == [0, 1, 2]
    assert [r.event_id for r in history[1:]] == [e.event_id for e in batch]


async def _assert_first_attempt_ended(
    proxy: PostgresCutProxy, store: EventStore, batch: list[NewEvent], *, landed: bool
) -> None:
    """Once the server has finished with the cut attempt, it has stored the batch iff `landed`."""
    await asyncio.wait_for(proxy.server_hung_up.wait(), TIMEOUT)
    assert bool(await _stored(store.pool, batch)) is landed


async def _assert_retry_stores_once(
    store: EventStore,
    url: str,
    schema: str,
    stream: str,
    batch: list[NewEvent],
    *,
    in_transaction: bool,
) -> None:
    """The same append again, over a connection of its own: each event ends up stored once."""
    direct = await connect(url, schema=schema)
    try:
        if in_transaction:
            async with direct.transaction():
                retried = await store.append(stream, batch, expected_version=0, conn=direct)
        else:
            retried = await store.append(stream, batch, expected_version=0, conn=direct)
    finally:
        await direct.close()
    assert retried.stream_versions == (1, 2)
    await _assert_stored_exactly_once(store, stream, batch, retried)


@pytest.mark.parametrize("wait_for_old_session", [True, False], ids=["settled", "racing"])
@pytest.mark.parametrize(("when", "lands"), CUTS, ids=["cut-after-commit", "cut-before-commit"])
async def test_retry_after_cut_at_commit_stores_each_event_once(
    store: EventStore,
    proxy: PostgresCutProxy,
    app_database_url: str,
    schema: str,
    when: When,
    lands: bool,
    wait_for_old_session: bool,
) -> None:
    """An append in a transaction whose COMMIT loses its connection, retried, is stored once."""
    stream, app = await _stream_with_one_event(store)
    batch = new_events([ApplicationDisabled(application_id=app)] * 2)
    conn = await connect(proxy.url(app_database_url), schema=schema)
    proxy.arm(query_contains(b"COMMIT"), when=when)
    try:
        with pytest.raises(CONNECTION_ERRORS):
            async with conn.transaction():
                await store.append(stream, batch, expected_version=0, conn=conn)
    finally:
        conn.terminate()
    assert proxy.cut.is_set()

    if wait_for_old_session:
        # Settled: the server has finished with the first attempt, so we can say which it was.
        await _assert_first_attempt_ended(proxy, store, batch, landed=lands)
    # Racing: the retry may run while the server is still committing or rolling back the
    # first attempt; it waits on the first attempt's event ids and must end the same way.
    await _assert_retry_stores_once(
        store, app_database_url, schema, stream, batch, in_transaction=True
    )


@pytest.mark.parametrize("wait_for_old_session", [True, False], ids=["settled", "racing"])
@pytest.mark.parametrize(("when", "lands"), CUTS, ids=["cut-after-sync", "cut-before-sync"])
async def test_retry_after_cut_at_autocommit_insert_stores_each_event_once(
    store: EventStore,
    proxy: PostgresCutProxy,
    app_database_url: str,
    schema: str,
    when: When,
    lands: bool,
    wait_for_old_session: bool,
) -> None:
    """An autocommit append cut at its Sync raises Unavailable; a retry stores it exactly once."""
    stream, app = await _stream_with_one_event(store)
    batch = new_events([ApplicationDisabled(application_id=app)] * 2)
    conn = await connect(proxy.url(app_database_url), schema=schema)
    # Before the Sync, the INSERT has run but its implicit transaction has not committed.
    proxy.arm(sync_after_executing(b"INSERT INTO events"), when=when)
    try:
        with pytest.raises(Unavailable, match="connection lost"):
            await store.append(stream, batch, expected_version=0, conn=conn)
    finally:
        conn.terminate()
    assert proxy.cut.is_set()

    if wait_for_old_session:
        await _assert_first_attempt_ended(proxy, store, batch, landed=lands)
    await _assert_retry_stores_once(
        store, app_database_url, schema, stream, batch, in_transaction=False
    )


async def test_proxy_cuts_only_once_armed(
    store: EventStore, proxy: PostgresCutProxy, app_database_url: str, schema: str
) -> None:
    """Unarmed, the proxy passes a whole transaction through; armed, it cuts at the trigger."""
    stream, app = await _stream_with_one_event(store)
    conn = await connect(proxy.url(app_database_url), schema=schema)
    try:
        async with conn.transaction():
            await store.append(
                stream,
                new_events([ApplicationDisabled(application_id=app)]),
                expected_version=0,
                conn=conn,
            )
        assert not proxy.cut.is_set()
        proxy.arm(query_contains(b"SELECT 42"), when="before")
        assert await conn.execute("SELECT 41") == "SELECT 1"
        with pytest.raises(CONNECTION_ERRORS):
            await conn.execute("SELECT 42")
        assert proxy.cut.is_set()
    finally:
        conn.terminate()
    assert await store.stream_version(stream) == 1
