"""Every database call is bounded in time, on the real server behind a proxy that black-holes.

A connection that answers nothing (a hung server, a partition: tests/tcp_proxy.py
swallows every byte) must not hang its caller: calls give up after the command
timeout, connecting after the connect timeout, a lease renewal after its own short
timeout. Sockets use TCP keepalives on both ends. A transaction left idle cannot hold
the log's snapshot horizon (and so every reader of the global feed) for longer than the
idle-in-transaction limit.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.executor.leases import Leases
from shared.db import KEEPALIVE_IDLE_S, command_timeout, connect, create_pool
from shared.errors import Unavailable
from shared.eventlog import START, EventStore, new_events
from shared.events.base import NewEvent
from shared.events.catalog import DeploymentCancelRequested, default_registry
from shared.testing import wait_until
from tests.support.tcp_proxy import PostgresCutProxy


def cancel(deployment_id: str) -> list[NewEvent]:
    return new_events([DeploymentCancelRequested(deployment_id=deployment_id)])


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.rsplit("@", 1)[1].split("/", 1)[0].rsplit(":", 1)
    return host, int(port)


@pytest.fixture
async def proxy(app_database_url: str) -> AsyncIterator[PostgresCutProxy]:
    async with PostgresCutProxy(*_host_port(app_database_url)) as proxy:
        yield proxy
        proxy.heal()


async def test_a_call_on_a_connection_that_answers_nothing_gives_up(
    proxy: PostgresCutProxy, app_database_url: str, schema: str
) -> None:
    """The client's command timeout (statement limit + as much again) ends a hung call."""
    pool = await create_pool(
        proxy.url(app_database_url), schema=schema, min_size=1, max_size=1, statement_timeout_s=0.3
    )
    try:
        assert await pool.fetchval("SELECT 1") == 1
        proxy.black_hole()
        began = time.monotonic()
        limit = command_timeout(0.3)
        assert limit is not None
        with pytest.raises(TimeoutError):  # (a hang fails the elapsed check below)
            async with asyncio.timeout(limit + 3):
                await pool.fetchval("SELECT 1")
        took = time.monotonic() - began
        assert limit <= took < limit + 2, took
    finally:
        proxy.heal()
        pool.terminate()  # its connection was black-holed: nothing to close gracefully


async def test_connecting_to_a_server_that_answers_nothing_gives_up(
    proxy: PostgresCutProxy, app_database_url: str, schema: str
) -> None:
    proxy.black_hole()
    began = time.monotonic()
    async with asyncio.timeout(5):  # the library's own default is 60 s
        with pytest.raises(Unavailable, match="cannot connect"):
            await connect(proxy.url(app_database_url), schema=schema, connect_timeout_s=0.5)
    assert time.monotonic() - began < 3


async def test_a_lease_renewal_has_its_own_short_timeout(
    proxy: PostgresCutProxy, app_database_url: str, schema: str, store: EventStore
) -> None:
    """A renewal that hangs is given up after `renew_timeout_s` (long statements are allowed
    30 s), so the holder tries again, or stops, before its lease can expire."""
    async with store.pool.acquire() as conn:
        await Leases.register(conn, "d1", "app")
    pool = await create_pool(proxy.url(app_database_url), schema=schema, min_size=1, max_size=2)
    try:
        leases = Leases(EventStore(pool, default_registry()), "a", ttl_s=3, renew_timeout_s=0.4)
        [lease] = await leases.claim(1)
        assert await leases.renew(lease)
        proxy.black_hole()
        began = time.monotonic()
        async with asyncio.timeout(5):  # the pool's own command timeout is 40 s
            with pytest.raises(Unavailable, match=r"no answer within 0\.4 s"):
                await leases.renew(lease)
        assert time.monotonic() - began < 2
    finally:
        proxy.heal()
        pool.terminate()


async def test_connections_use_tcp_keepalives_on_both_ends(
    app_database_url: str, schema: str
) -> None:
    pool = await create_pool(app_database_url, schema=schema, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            raw = conn._con  # asyncpg offers no other way
            sock = raw._transport.get_extra_info("socket")
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                pytest.skip("the test database is reached over a Unix socket")
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVE_IDLE_S
            assert await conn.fetchval("SHOW tcp_keepalives_idle") == str(KEEPALIVE_IDLE_S)
    finally:
        await pool.close()


async def test_a_transaction_left_idle_holds_the_feed_only_until_its_limit(
    app_database_url: str, schema: str, store: EventStore
) -> None:
    """A writer that stalls inside its transaction holds the snapshot horizon: readers of the
    global feed see nothing committed after it. The server ends its session at the limit."""
    stalled_pool = await create_pool(
        app_database_url, schema=schema, min_size=1, max_size=1, idle_in_transaction_timeout_s=1.0
    )
    try:
        stalled = await stalled_pool.acquire()
        transaction = stalled.transaction()
        await transaction.start()
        await store.append("deployment-d0", cancel("d0"), expected_version=None, conn=stalled)
        # Committed after the stalled transaction began: behind the horizon it holds.
        await store.append("deployment-d1", cancel("d1"), expected_version=None)
        assert await store.read_all(START) == []

        async def fed() -> bool:
            return [e.stream_id for e in await store.read_all(START)] == ["deployment-d1"]

        await wait_until(fed, within_s=10, what="the feed past the stalled transaction")
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
            await stalled.fetchval("SELECT 1")
    finally:
        # Terminated, not closed: `close` waits for every connection to come back, and the
        # one the server ended may never be released cleanly (seen: `make test` held until
        # pytest-timeout's 600 s, "Pool.close() is taking over 60 seconds").
        stalled_pool.terminate()
