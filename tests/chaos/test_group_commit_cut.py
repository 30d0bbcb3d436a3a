"""A group commit whose connection is cut at its commit, against a real PostgreSQL.

The store's pool goes through a cutting proxy, armed on the Sync after the
group's statement (where its implicit transaction commits; the group is told
apart from the append that went first by a stream id only it holds): just before it
(the server rolls the group back) or just after (it commits, the client never
hears back). Every caller in the group gets `Unavailable`; the log holds all
of the group or none of it — never a part — and a retry of each append
returns where it is stored (or stores it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Literal
from urllib.parse import urlsplit

import pytest

from shared.db import create_pool
from shared.errors import Unavailable
from shared.eventlog import NO_STREAM, AppendResult, EventStore, new_events
from shared.events import NewEvent
from shared.events.catalog import ApplicationDisabled, default_registry
from shared.ids import new_id
from tests.support.tcp_proxy import PostgresCutProxy, Trigger

TIMEOUT = 10.0


def sync_after_binding(marker: bytes) -> Trigger:
    """The Sync after a statement bound with `marker` among its parameters (a stream id only
    the group holds): where that statement's implicit transaction commits."""
    bound = False

    def trigger(kind: bytes, body: bytes) -> bool:
        nonlocal bound
        if kind == b"B":
            bound = marker in body
        return kind == b"S" and bound

    return trigger


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[PostgresCutProxy]:
    upstream = urlsplit(database_url)
    assert upstream.hostname is not None and upstream.port is not None
    async with PostgresCutProxy(upstream.hostname, upstream.port) as proxy:
        yield proxy


@pytest.mark.parametrize(("when", "lands"), [("before", False), ("after", True)])
async def test_a_group_cut_at_its_commit_fails_every_caller_and_is_all_or_nothing(
    store: EventStore,
    proxy: PostgresCutProxy,
    app_database_url: str,
    schema: str,
    when: Literal["before", "after"],
    lands: bool,
) -> None:
    pool = await create_pool(proxy.url(app_database_url), schema=schema, min_size=1, max_size=4)
    cut_store = EventStore(pool, default_registry())
    streams = [f"application-{new_id()}" for _ in range(3)]
    batches: list[list[NewEvent]] = [
        new_events([ApplicationDisabled(application_id=f"{s}-{n}") for n in range(2)])
        for s in streams
    ]
    proxy.arm(sync_after_binding(streams[1].encode()), when=when)
    try:
        async with asyncio.timeout(TIMEOUT):
            first, *grouped = await asyncio.gather(
                # Goes alone, at once; the others queue behind it and form one group.
                cut_store.append(f"application-{new_id()}", _one(), expected_version=NO_STREAM),
                *(
                    cut_store.append(s, b, expected_version=NO_STREAM)
                    for s, b in zip(streams, batches, strict=True)
                ),
                return_exceptions=True,
            )
    finally:
        await pool.close()
    assert proxy.cut.is_set() and cut_store.group_commit.groups == 1
    assert isinstance(first, AppendResult)
    assert all(isinstance(o, Unavailable) for o in grouped), grouped

    await asyncio.wait_for(proxy.server_hung_up.wait(), TIMEOUT)
    ids = [e.event_id for batch in batches for e in batch]
    stored = await store.pool.fetchval(
        "SELECT count(*) FROM events WHERE event_id = ANY($1::uuid[])", ids
    )
    assert stored == (len(ids) if lands else 0)

    # Each caller retries its own append: stored exactly once, at versions 0 and 1.
    for stream, batch in zip(streams, batches, strict=True):
        retried = await store.append(stream, batch, expected_version=NO_STREAM)
        assert retried.stream_versions == (0, 1)
    assert await store.pool.fetchval(
        "SELECT count(*) FROM events WHERE event_id = ANY($1::uuid[])", ids
    ) == len(ids)


def _one() -> list[NewEvent]:
    return new_events([ApplicationDisabled(application_id=new_id())])
