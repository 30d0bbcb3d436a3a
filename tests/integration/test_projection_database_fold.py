"""Projections a replay folds in PostgreSQL (`DatabaseFold`): the rows of the live fold,
whatever the windows cut and in whatever order transactions committed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence

import asyncpg
import pytest

from shared.db import create_pool
from shared.eventlog import ANY, EventStore, LogPosition, new_events
from shared.events import Event, RecordedEnvelope, vocabulary
from shared.events.catalog import ApplicationDisabled, DeploymentTriggered, default_registry
from shared.projections import ProjectionRunner, replay
from shared.projections.stream_stats import StreamStatsProjection


class CountingStreamStats(StreamStatsProjection):
    """stream_stats that counts the windows it folded in the database and the batches of
    envelopes it was given."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)
        self.windows = 0
        self.envelope_batches = 0

    async def fold_window(
        self,
        conn: asyncpg.Connection,
        tables: Mapping[str, str],
        after: LogPosition,
        through: LogPosition,
    ) -> None:
        self.windows += 1
        await super().fold_window(conn, tables, after, through)

    async def apply_envelopes(
        self,
        conn: asyncpg.Connection,
        events: Sequence[RecordedEnvelope],
        tables: Mapping[str, str],
    ) -> None:
        self.envelope_batches += 1
        await super().apply_envelopes(conn, events, tables)


@pytest.fixture
async def writer_store(app_database_url: str, schema: str) -> AsyncIterator[EventStore]:
    pool = await create_pool(app_database_url, schema=schema, min_size=1, max_size=4)
    yield EventStore(pool, default_registry())
    await pool.close()


def _triggered(deployment: str, n: int) -> DeploymentTriggered:
    return DeploymentTriggered(
        deployment_id=deployment,
        application_id=f"a{n % 3}",
        trigger=vocabulary.Trigger("on_commit"),
        commit_hash=f"c{n}",
    )


async def _rows(pool: asyncpg.Pool, view: str) -> list[str]:
    return [r[0] for r in await pool.fetch(f'SELECT v::text FROM "{view}" AS v ORDER BY 1')]


async def test_a_replay_folded_in_the_database_equals_the_live_fold(
    projector_store: EventStore, writer_store: EventStore
) -> None:
    """Windows of 7 events cut most streams in two or more, so each stream's count, first
    and last event are merged across windows; one transaction takes its id before all the
    others and commits last, so the log's commit-safe order differs from its positions.
    The replay built in the database gives the live runner's rows byte for byte."""
    async with writer_store.pool.acquire() as early, early.transaction():
        # This transaction's id is older than the appends below, its event's position newer.
        await early.fetchval("SELECT pg_current_xact_id()")
        for n in range(60):
            events: list[Event] = (
                [ApplicationDisabled(application_id=f"a{n % 3}")]
                if n % 4 == 0
                else [_triggered(f"d{n % 5}", n) for _ in range(1 + n % 3)]
            )
            stream = f"application-a{n % 3}" if n % 4 == 0 else f"deployment-d{n % 5}"
            await writer_store.append(stream, new_events(events), expected_version=ANY)
        await writer_store.append(
            "deployment-early",
            new_events([_triggered("early", 99)]),
            expected_version=ANY,
            conn=early,
        )
    live = ProjectionRunner(projector_store, StreamStatsProjection("stream_stats_live"))
    await live.run_until_caught_up()

    replayed = CountingStreamStats()
    result = await replay(projector_store, replayed, batch_size=7)

    pool = projector_store.pool
    total = await pool.fetchval("SELECT count(*) FROM events")
    assert result.events == total
    assert replayed.windows == -(-total // 7)
    assert replayed.envelope_batches == 0
    assert await _rows(pool, "stream_stats") == await _rows(pool, "stream_stats_live")
    assert await pool.fetchval("SELECT sum(events) FROM stream_stats") == total
    # The early transaction's event has the newest position but is first in commit order:
    # a window cut by positions alone would fold it twice or never.
    first = await pool.fetchval(
        "SELECT stream_id FROM events ORDER BY tx_id, global_position LIMIT 1"
    )
    newest = await pool.fetchval(
        "SELECT stream_id FROM events ORDER BY global_position DESC LIMIT 1"
    )
    assert first == newest == "deployment-early"
