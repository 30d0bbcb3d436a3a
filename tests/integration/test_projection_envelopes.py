"""Envelope-only projections (`EnvelopeProjection`): fed envelopes by replay and the live
runner, never a decoded payload, with the same rows as a fold of whole events."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import asyncpg
import pytest

from shared.db import create_pool
from shared.eventlog import ANY, EventStore, new_events
from shared.events import Event, EventRegistry, RecordedEnvelope, RecordedEvent, vocabulary
from shared.events.catalog import ApplicationDisabled, DeploymentTriggered, default_registry
from shared.projections import ProjectionRunner, replay
from shared.projections.base import check_projection
from shared.projections.single_table import SingleTableProjection
from shared.projections.stream_stats import StreamStatsProjection


class UnknownToProjector(Event, frozen=True, kw_only=True, tag="test.unknown_to_projector"):
    """Written by a newer build: the projector's registry cannot decode it."""

    note: str


class TypeRecordingStreamStats(StreamStatsProjection):
    """stream_stats that remembers the type of every record it was given."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)
        self.fed: set[type] = set()

    async def apply_envelopes(
        self,
        conn: asyncpg.Connection,
        events: Sequence[RecordedEnvelope],
        tables: Mapping[str, str],
    ) -> None:
        self.fed.update(type(e) for e in events)
        await super().apply_envelopes(conn, events, tables)


class WholeEventStreamStats(SingleTableProjection):
    """stream_stats' fold fed whole decoded events, as every projection was before envelopes."""

    name = "stream_stats_whole"
    ddl = StreamStatsProjection.ddl
    version = 1

    def __init__(self) -> None:
        super().__init__()
        self._fold = StreamStatsProjection(self.name)

    async def apply(
        self, conn: asyncpg.Connection, event: RecordedEvent, tables: Mapping[str, str]
    ) -> None:
        await self.apply_batch(conn, [event], tables)

    async def apply_batch(
        self,
        conn: asyncpg.Connection,
        events: Sequence[RecordedEvent],
        tables: Mapping[str, str],
    ) -> None:
        assert all(type(e) is RecordedEvent for e in events)
        await self._fold.apply_envelopes(conn, events, tables)


_FROM_LOG = """
SELECT stream_id, split_part(stream_id, '-', 1), count(*),
       (array_agg(stream_version ORDER BY stream_version DESC))[1],
       (array_agg(global_position ORDER BY stream_version DESC))[1],
       (array_agg(event_type ORDER BY stream_version DESC))[1],
       min(recorded_at), max(recorded_at)
FROM events GROUP BY stream_id ORDER BY 1
"""


async def as_text(pool: asyncpg.Pool, view: str) -> list[str]:
    """Every row of `view` as PostgreSQL prints it: equal lists are byte-identical rows."""
    return [r[0] for r in await pool.fetch(f'SELECT v::text FROM "{view}" AS v ORDER BY 1')]


async def from_log(pool: asyncpg.Pool) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await pool.fetch(_FROM_LOG)]


async def write(store: EventStore, count: int, *, unknown_every: int = 0) -> None:
    """`count` events over a few application and deployment streams, some appended together;
    with `unknown_every`, every n-th an event the projector cannot decode."""
    written = 0
    for i in itertools.count():
        if written >= count:
            return
        if unknown_every and i % unknown_every == 0:
            batch: list[Event] = [UnknownToProjector(note=f"n{i}")]
            stream = f"application-a{i % 5}"
        elif i % 3:
            batch = [
                DeploymentTriggered(
                    deployment_id=f"d{i % 7}",
                    application_id=f"a{i % 5}",
                    trigger=vocabulary.Trigger("on_commit"),
                    commit_hash=f"c{i}",
                )
                for _ in range(1 + i % 3)
            ]
            stream = f"deployment-d{i % 7}"
        else:
            batch = [ApplicationDisabled(application_id=f"a{i % 5}")]
            stream = f"application-a{i % 5}"
        await store.append(stream, new_events(batch), expected_version=ANY)
        written += len(batch)


@pytest.fixture
async def writer_store(app_database_url: str, schema: str) -> AsyncIterator[EventStore]:
    """The application's store, by a build that knows one event type more than the projector."""
    registry: EventRegistry = default_registry()
    registry.register(UnknownToProjector)
    pool = await create_pool(app_database_url, schema=schema, min_size=1, max_size=2)
    yield EventStore(pool, registry)
    await pool.close()


async def test_envelope_replay_equals_a_fold_of_whole_events(
    projector_store: EventStore, writer_store: EventStore
) -> None:
    """Replayed (in the database) and live from envelopes, stream_stats' rows are byte for
    byte those of the same fold given whole decoded events, and those the log's own
    GROUP BY gives."""
    live = TypeRecordingStreamStats("stream_stats_live")
    whole = WholeEventStreamStats()
    runners = [ProjectionRunner(projector_store, p, batch_size=40) for p in (live, whole)]
    await write(writer_store, 300)
    replayed = TypeRecordingStreamStats()
    result = await replay(projector_store, replayed, batch_size=64)
    assert result.events >= 300
    for runner in runners:
        await runner.run_until_caught_up()

    # The replay's build is folded in the database; only its catch-up is fed records.
    assert live.fed == {RecordedEnvelope}
    assert replayed.fed <= {RecordedEnvelope}
    pool = projector_store.pool
    assert await as_text(pool, "stream_stats") == await as_text(pool, "stream_stats_whole")
    assert await as_text(pool, "stream_stats_live") == await as_text(pool, "stream_stats_whole")
    assert [tuple(r) for r in await pool.fetch('SELECT * FROM "stream_stats" ORDER BY 1')] == (
        await from_log(pool)
    )


async def test_envelope_projections_never_decode_a_payload(
    projector_store: EventStore, writer_store: EventStore
) -> None:
    """Events this build cannot decode stop no envelope-only fold: replay and the live
    runner count them like any other (a decode would raise UnknownEventType)."""
    await write(writer_store, 200, unknown_every=4)
    replayed = await replay(projector_store, StreamStatsProjection(), batch_size=50)
    assert replayed.events >= 200
    runner = ProjectionRunner(projector_store, StreamStatsProjection("stream_stats_live"))
    await write(writer_store, 60, unknown_every=3)
    await runner.run_until_caught_up()
    again = await replay(projector_store, StreamStatsProjection(), batch_size=50)
    assert again.events >= 260

    pool = projector_store.pool
    unknown = await pool.fetchval(
        "SELECT count(*) FROM events WHERE event_type = 'test.unknown_to_projector'"
    )
    assert unknown > 20
    log_rows = await from_log(pool)
    assert [tuple(r) for r in await pool.fetch('SELECT * FROM "stream_stats" ORDER BY 1')] == (
        log_rows
    )
    assert [
        tuple(r) for r in await pool.fetch('SELECT * FROM "stream_stats_live" ORDER BY 1')
    ] == log_rows


def test_an_envelope_projection_may_not_override_the_whole_event_methods() -> None:
    """Replay and the runner call only `apply_envelopes`: an `apply_batch` override, which
    they would skip without a word, is refused when the projection is checked."""

    class Overriding(StreamStatsProjection):
        async def apply_batch(
            self,
            conn: asyncpg.Connection,
            events: Sequence[RecordedEvent],
            tables: Mapping[str, str],
        ) -> None:
            await super().apply_envelopes(conn, events, tables)

    with pytest.raises(ValueError, match=r"overrides apply_batch.*override apply_envelopes"):
        check_projection(Overriding())
    check_projection(TypeRecordingStreamStats())
