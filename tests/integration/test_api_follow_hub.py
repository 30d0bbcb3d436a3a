"""Log follows share one feed per deployment (services/api/follow_hub.py).

Over HTTP, against real PostgreSQL and NATS: the API reaches PostgreSQL through a
proxy that counts the reads of `stage_logs` and of the deployment's stream, so
what is measured is what the database serves. Five followers of one deployment cost
the reads of one, and each gets every line, in order, then `end`. The hub itself,
over the real table: a follower that stops reading falls out of the window while the
others go on, and catches up from the table, in order.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from services.api.follow_hub import FollowHub
from services.api.routes import API_PREFIX
from services.api.schemas import LogLine
from shared.db import create_pool
from shared.eventlog import EventStore
from shared.events import vocabulary
from shared.events.catalog import DeploymentCompleted, default_registry
from shared.stagelog import Severity, StageLogs
from shared.subjects import Subjects
from shared.testing import wait_until
from tests.support.api import api_key_for, auth_headers, served_api
from tests.support.deployment_events import deployment, write
from tests.support.tcp_proxy import ExecutionCounter, PostgresCutProxy

FOLLOWERS = 5
WINDOW_S = 2.0
POLL_S = 0.5  # the API's poll of a followed deployment (routes/deployment_logs.py)


@pytest.fixture
async def counted(
    api_database_url: str, schema: str
) -> AsyncIterator[tuple[ExecutionCounter, asyncpg.Pool]]:
    host, port = api_database_url.rsplit("@", 1)[1].split("/", 1)[0].rsplit(":", 1)
    # Reads of `stage_logs` (the stream reads also serve the key checks, which are per key).
    counter = ExecutionCounter(b"FROM stage_logs")
    async with PostgresCutProxy(host, int(port)) as proxy:
        proxy.arm(counter, when="after")
        pool = await create_pool(proxy.url(api_database_url), schema=schema, max_size=20)
        try:
            yield counter, pool
        finally:
            await pool.close()


async def _follow(http: aiohttp.ClientSession, path: str, into: list[tuple[str, Any]]) -> None:
    async with http.get(path, params={"follow": "true"}) as reply:
        assert reply.status == 200
        event = ""
        async for raw in reply.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                into.append((event, data.get("message", data.get("status"))))


async def test_followers_of_a_deployment_share_one_upstream(
    counted: tuple[ExecutionCounter, asyncpg.Pool],
    store: EventStore,
    pool: asyncpg.Pool,
    nc: NatsClient,
    subjects: Subjects,
) -> None:
    counter, api_pool = counted
    d = await deployment(store)
    logs = StageLogs(pool, nc, subjects)
    await logs.write(d, "stage-0", Severity.INFO, "line 0")
    api_store = EventStore(api_pool, default_registry())
    async with served_api(
        api_store, api_pool, nc=nc, subjects=subjects, max_log_streams_per_key=FOLLOWERS
    ) as api:
        received: list[list[tuple[str, Any]]] = [[] for _ in range(FOLLOWERS)]
        path = f"{API_PREFIX}/deployments/{d}/logs"
        async with aiohttp.ClientSession(
            base_url=api, headers=auth_headers(api_key_for(api))
        ) as http:
            followers = [asyncio.create_task(_follow(http, path, got)) for got in received]
            await wait_until(
                lambda: all(got for got in received), within_s=30, what="every backlog"
            )
            # A quiet deployment: what the followers cost the database over a window.
            before = counter.executions
            await asyncio.sleep(WINDOW_S)  # a measuring window, not a wait for something
            quiet_reads = counter.executions - before
            for n in range(1, 21):
                await logs.write(d, f"stage-{n % 3}", Severity.INFO, f"line {n}")
            await write(
                store,
                d,
                DeploymentCompleted(
                    deployment_id=d,
                    application_id="app1",
                    status=vocabulary.DeploymentStatus("SUCCESS"),
                ),
            )
            async with asyncio.timeout(30):
                await asyncio.gather(*followers)
    expected = [("log", f"line {n}") for n in range(21)] + [("end", "SUCCESS")]
    for got in received:
        assert got == expected
    # One feed: a read of the lines per poll, whatever the number of followers (each
    # follower polling for itself made FOLLOWERS times as many).
    one_feed = WINDOW_S / POLL_S + 1
    assert 0 < quiet_reads <= one_feed, quiet_reads


@pytest.mark.usefixtures("store")
async def test_a_slow_follower_falls_behind_alone_and_catches_up_from_the_table(
    pool: asyncpg.Pool,
) -> None:
    logs = StageLogs(pool, None, Subjects())
    ended: list[str] = []

    async def read_lines(deployment_id: str, after: int) -> list[LogLine]:
        rows = await pool.fetch(
            "SELECT id, deployment_id, stage_id, severity, message, recorded_at FROM stage_logs "
            "WHERE deployment_id = $1 AND id > $2 ORDER BY id LIMIT 100",
            deployment_id,
            after,
        )
        return [LogLine(**dict(row)) for row in rows]

    async def read_end(_deployment_id: str) -> str | None:
        return ended[0] if ended else None

    hub = FollowHub(read_lines=read_lines, read_end=read_end, poll_s=0.02, min_poll_s=0, keep=5)
    async with hub.follow("d1") as feed, hub.follow("d1") as same:
        assert same is feed and hub.feeds == 1
        fast: list[str] = []
        cursor, slow_cursor = 0, 0

        async def keep_up() -> None:
            nonlocal cursor
            version = -1
            while not (feed.end is not None and feed.caught_up(cursor)):
                version = feed.version
                lines = feed.since(cursor)
                assert lines is not None, "the fast follower never falls out of the window"
                for line in lines:
                    fast.append(line.message)
                    cursor = line.id
                await feed.changed(version, 1.0)

        fast_task = asyncio.create_task(keep_up())
        for n in range(30):
            await logs.write("d1", "s", Severity.INFO, f"line {n}")
            # One line at a time through the feed, so the fast follower sees each.
            await wait_until(lambda: fast[-1:] == [f"line {n}"], within_s=10, what="line")  # noqa: B023 - awaited within the iteration
        ended.append("SUCCESS")
        async with asyncio.timeout(10):
            await fast_task
        assert fast == [f"line {n}" for n in range(30)]
        # The slow one read nothing meanwhile: its lines have left the window…
        assert feed.since(slow_cursor) is None
        # …so it reads them from the table itself, in order, and then is caught up.
        slow = [line.message for line in await read_lines("d1", slow_cursor)]
        assert slow == fast
    assert hub.feeds == 0
