"""Optimistic concurrency under real contention: K writers, one expected version, one winner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared.db import connect
from shared.errors import ConcurrencyConflict
from shared.eventlog import NO_STREAM, AppendResult, EventStore, new_events
from shared.events import NewEvent
from shared.events.catalog import ApplicationDisabled
from shared.ids import new_id

WRITERS = 8
ROUNDS = 20


@pytest.fixture
async def writer_connections(
    app_database_url: str, schema: str
) -> AsyncIterator[list[asyncpg.Connection]]:
    """One connection per writer, outside the pool, so that all K really run at once."""
    conns = [await connect(app_database_url, schema=schema) for _ in range(WRITERS)]
    yield conns
    for conn in conns:
        await conn.close()


async def test_k_appends_at_the_same_expected_version_exactly_one_wins(
    store: EventStore, writer_connections: list[asyncpg.Connection]
) -> None:
    """K appends at the same expected version: exactly one wins, 20 rounds, versions gap-free."""
    app = new_id()
    stream = f"application-{app}"
    barrier = asyncio.Barrier(WRITERS)
    winners: list[NewEvent] = []

    async def attempt(
        conn: asyncpg.Connection, batch: list[NewEvent], expected: int
    ) -> AppendResult:
        await barrier.wait()  # all K leave together
        return await store.append(stream, batch, expected_version=expected, conn=conn)

    for round_ in range(ROUNDS):
        expected = NO_STREAM if round_ == 0 else round_ - 1
        batches = [
            new_events([ApplicationDisabled(application_id=f"{app}-{round_}-{k}")])
            for k in range(WRITERS)
        ]
        async with asyncio.timeout(10):
            outcomes = await asyncio.gather(
                *(
                    attempt(c, b, expected)
                    for c, b in zip(writer_connections, batches, strict=True)
                ),
                return_exceptions=True,
            )
        won = [k for k, o in enumerate(outcomes) if isinstance(o, AppendResult)]
        lost = [o for o in outcomes if isinstance(o, ConcurrencyConflict)]
        assert len(won) == 1 and len(lost) == WRITERS - 1, f"round {round_}: {outcomes}"
        result = outcomes[won[0]]
        assert isinstance(result, AppendResult) and result.stream_versions == (round_,)
        for conflict in lost:
            assert conflict.stream_id == stream
            assert conflict.expected_version == expected
            # The loser saw the winner's commit (actual known) or collided with it mid-insert.
            assert conflict.actual_version in (None, round_)
        winners.append(batches[won[0]][0])

    history = await store.read_stream(stream)
    assert [e.stream_version for e in history] == list(range(ROUNDS))
    assert [e.event_id for e in history] == [w.event_id for w in winners]
    assert (
        await store.pool.fetchval("SELECT count(*) FROM events WHERE stream_id = $1", stream)
        == ROUNDS
    )
