"""Event-log followers share one reader of the log's tail (services/api/log_tail.py).

Over HTTP, against real PostgreSQL: the API reaches it through a proxy that counts the
reads of the log's tail (`read_all`'s statement), so what is measured is what the
database serves. Five open `GET /events/stream` cost the reads of one, and each gets
every event, in order. The tail itself, over the real table: a follower from the
beginning of a history longer than the window reads the table until it reaches the
window; one that stops reading falls out of the window and catches up alone, in order;
the reader stops with the last follower.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from services.api.log_tail import LogTail
from services.api.routes import API_PREFIX
from services.api.routes.event_stream import head_position
from shared.db import create_pool
from shared.eventlog import EventStore, new_events
from shared.eventlog.position import LogPosition
from shared.events.base import RecordedEvent
from shared.events.catalog import ApplicationDisabled, ApplicationEnabled, default_registry
from shared.testing import wait_until
from tests.support.api import api_key_for, auth_headers, served_api
from tests.support.tcp_proxy import ExecutionCounter, PostgresCutProxy

FOLLOWERS = 5
WINDOW_S = 1.0


@pytest.fixture
async def counted(
    api_database_url: str, schema: str
) -> AsyncIterator[tuple[ExecutionCounter, EventStore]]:
    host, port = api_database_url.rsplit("@", 1)[1].split("/", 1)[0].rsplit(":", 1)
    counter = ExecutionCounter(b"FROM events", b"(tx_id, global_position) >")  # read_all
    async with PostgresCutProxy(host, int(port)) as proxy:
        proxy.arm(counter, when="after")
        pool = await create_pool(proxy.url(api_database_url), schema=schema, max_size=20)
        try:
            yield counter, EventStore(pool, default_registry())
        finally:
            await pool.close()


async def _append(store: EventStore, count: int, app: str = "tail") -> None:
    for n in range(count):
        event = ApplicationDisabled(application_id=app) if n % 2 else ApplicationEnabled(app)
        await store.append(f"application-{app}", new_events([event]), expected_version=None)


async def _follow(http: aiohttp.ClientSession, into: list[str], opened: list[bool]) -> None:
    path = f"{API_PREFIX}/events/stream"
    async with http.get(path, params={"after": "head"}) as reply:
        assert reply.status == 200
        opened.append(True)
        async for raw in reply.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("data: "):
                into.append(json.loads(line[6:])["event_id"])


async def _quiet_reads(counter: ExecutionCounter) -> int:
    before = counter.executions
    await asyncio.sleep(WINDOW_S)  # a measuring window, not a wait for something
    return counter.executions - before


async def test_event_stream_followers_share_one_reader(
    counted: tuple[ExecutionCounter, EventStore], store: EventStore
) -> None:
    counter, api_store = counted
    await _append(store, 3)
    async with (
        served_api(api_store, api_store.pool, max_log_streams_per_key=FOLLOWERS) as api,
        aiohttp.ClientSession(base_url=api, headers=auth_headers(api_key_for(api))) as http,
    ):
        received: list[list[str]] = [[] for _ in range(FOLLOWERS)]
        opened: list[bool] = []
        followers = [asyncio.create_task(_follow(http, got, opened)) for got in received[:1]]
        await wait_until(
            lambda: counter.executions > 2, within_s=10, what="the first follower reads"
        )
        one_follower = await _quiet_reads(counter)
        followers += [asyncio.create_task(_follow(http, got, opened)) for got in received[1:]]
        await wait_until(lambda: len(opened) == FOLLOWERS, within_s=10, what="the others")
        five_followers = await _quiet_reads(counter)
        await _append(store, 20)
        await wait_until(
            lambda: all(len(got) == 20 for got in received), within_s=20, what="every event"
        )
        for task in followers:
            task.cancel()
        for task in followers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    stored = [str(e.event_id) for e in (await store.read_stream("application-tail"))[3:]]
    for got in received:
        assert got == stored
    # One reader: five followers cost what one does (each polling for itself cost five
    # times as much). Generous bound: the window's reads vary with the machine's load.
    assert 0 < five_followers < 2 * one_follower, (one_follower, five_followers)


async def _take(follow: AsyncIterator[list[RecordedEvent]], count: int) -> list[RecordedEvent]:
    got: list[RecordedEvent] = []
    async with asyncio.timeout(20):
        while len(got) < count:
            got += await anext(follow)
    return got


async def test_a_follower_behind_the_window_catches_up_alone_in_order(store: EventStore) -> None:
    async def read(after: LogPosition, limit: int) -> list[RecordedEvent]:
        return await store.read_all(after, limit=limit)

    tail = LogTail(read=read, head=lambda: head_position(store), poll_s=0.01, keep=8, page=5)
    start = await head_position(store)
    await _append(store, 30, app="history")  # longer than the window, before any follower
    everything = tail.follow(start)
    slow = tail.follow(start)
    try:
        history = await _take(everything, 30)
        await wait_until(lambda: tail._floor is not None, within_s=10, what="the tail's head")
        stalled = await _take(slow, 5)  # then stops reading while the log moves on
        await _append(store, 25, app="live")
        live = await _take(everything, 25)
        rest = await _take(slow, 50)
    finally:
        await everything.aclose()
        assert tail.running
        await slow.aclose()
    assert not tail.running
    stored = await store.read_all(start, limit=1000)
    assert [e.event_id for e in history + live] == [e.event_id for e in stored]
    assert [e.event_id for e in stalled + rest] == [e.event_id for e in stored]
