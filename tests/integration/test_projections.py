"""Projections against a real PostgreSQL: checkpointed batches, replay and swap, time travel."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sys
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import pytest

from shared.db import create_pool
from shared.errors import ConfigError
from shared.eventlog import ANY, NO_STREAM, EventStore, LogPosition, new_events
from shared.eventlog.asof import fold, state_as_of
from shared.events import Event, RecordedEnvelope, RecordedEvent, vocabulary
from shared.events.catalog import (
    ApplicationDisabled,
    ApplicationRegistered,
    DeploymentCompleted,
    DeploymentTriggered,
    StageCompleted,
    StageStarted,
    default_registry,
)
from shared.ids import new_id
from shared.projections import (
    ProjectionOutdated,
    ProjectionRunner,
    ReplayInProgress,
    load_state,
    replay,
)
from shared.projections import runner as runner_module
from shared.projections.applications import ApplicationsProjection
from shared.projections.base import check_projection, check_unique, event_tags
from shared.projections.deployments import DeploymentsProjection
from shared.projections.stream_stats import StreamStatsProjection
from shared.testing import wait_until
from slipway_cli import main as cli_main
from tests.support import running

# Every phase of a test is bounded: a hang fails fast instead of eating the suite.
# A guard against hangs, not a speed assertion: a loaded 2-core CI box is slow.
PHASE_TIMEOUT_S = 90
T0 = datetime(2026, 1, 1, tzinfo=UTC)

# --- writing a varied log ---------------------------------------------------------------


@dataclass
class Writer:
    """Appends a random mix of application and deployment events to streams of its own."""

    store: EventStore
    seed: int
    written: int = 0
    apps: list[str] = field(default_factory=list)
    deployments: dict[str, int] = field(default_factory=dict)

    async def write_one(self) -> None:
        rng = random.Random(f"{self.seed}:{self.written}")
        roll = rng.random()
        if roll < 0.25 or not self.apps:
            app = new_id()
            self.apps.append(app)
            await self.store.append(
                f"application-{app}", new_events([registered(app, rng)]), expected_version=NO_STREAM
            )
            self.written += 1
        elif roll < 0.35:
            app = rng.choice(self.apps)
            await self.store.append(
                f"application-{app}", new_events([registered(app, rng)]), expected_version=ANY
            )
            self.written += 1
        elif roll < 0.45:
            app = rng.choice(self.apps)
            await self.store.append(
                f"application-{app}",
                new_events([ApplicationDisabled(application_id=app)]),
                expected_version=ANY,
            )
            self.written += 1
        else:
            app = rng.choice(self.apps)
            deployment = (
                rng.choice(list(self.deployments))
                if self.deployments and rng.random() < 0.5
                else new_id()
            )
            batch = [triggered(deployment, app) for _ in range(rng.randint(1, 3))]
            await self.store.append(
                f"deployment-{deployment}", new_events(batch), expected_version=ANY
            )
            self.deployments[deployment] = self.deployments.get(deployment, 0) + len(batch)
            self.written += len(batch)

    async def write(self, count: int) -> None:
        target = self.written + count
        while self.written < target:
            await self.write_one()

    async def write_until(self, stop: asyncio.Event, minimum: int) -> None:
        """Keep writing until `stop` is set and at least `minimum` events are written."""
        while not stop.is_set() or self.written < minimum:
            await self.write_one()


def registered(app: str, rng: random.Random | None = None) -> ApplicationRegistered:
    rng = rng or random.Random(app)
    return ApplicationRegistered(
        application_id=app,
        name=f"app-{rng.randint(0, 999)}",
        repository_id=f"repo-{rng.randint(0, 9)}",
        path=f"apps/{app}",
        labels=(("env", rng.choice(["dev", "stg", "prd"])), ("team", f"t{rng.randint(0, 3)}")),
    )


def triggered(deployment: str, app: str) -> DeploymentTriggered:
    return DeploymentTriggered(
        deployment_id=deployment,
        application_id=app,
        trigger=vocabulary.Trigger("on_commit"),
        commit_hash=new_id(),
    )


@pytest.fixture
def store(projector_store: EventStore) -> EventStore:
    """The runners' store: projections are built and replayed as the projector's role."""
    return projector_store


@pytest.fixture
async def writer_store(app_database_url: str, schema: str) -> AsyncIterator[EventStore]:
    """A store on a pool of its own, so writers never wait for the runners' connections."""
    pool = await create_pool(app_database_url, schema=schema, min_size=1, max_size=8)
    yield EventStore(pool, default_registry())
    await pool.close()


# --- reading results --------------------------------------------------------------------


async def rows_of(pool: asyncpg.Pool, view: str) -> list[tuple[Any, ...]]:
    """Every row a reader sees through `view`, in key order."""
    return [tuple(r) for r in await pool.fetch(f'SELECT * FROM "{view}" ORDER BY 1')]


_STREAM_STATS_FROM_LOG = """
SELECT stream_id, split_part(stream_id, '-', 1), count(*),
       (array_agg(stream_version ORDER BY stream_version DESC))[1],
       (array_agg(global_position ORDER BY stream_version DESC))[1],
       (array_agg(event_type ORDER BY stream_version DESC))[1],
       (array_agg(recorded_at ORDER BY stream_version))[1],
       (array_agg(recorded_at ORDER BY stream_version DESC))[1]
FROM events GROUP BY stream_id ORDER BY 1
"""


async def stream_stats_from_log(pool: asyncpg.Pool) -> list[tuple[Any, ...]]:
    """What `stream_stats` must hold, computed by SQL straight from the log."""
    return [tuple(r) for r in await pool.fetch(_STREAM_STATS_FROM_LOG)]


async def log_head(pool: asyncpg.Pool) -> LogPosition:
    row = await pool.fetchrow(
        "SELECT tx_id, global_position FROM events ORDER BY tx_id DESC, global_position DESC "
        "LIMIT 1"
    )
    assert row is not None
    return LogPosition(row["tx_id"], row["global_position"])


class StallingStreamStats(StreamStatsProjection):
    """stream_stats that stops in its `stall_on`-th batch until released.

    `after` stops once the batch's rows are written (so they are uncommitted);
    `before` stops before writing them (so its transaction has no xid yet).
    """

    def __init__(self, name: str, stall_on: int, when: Literal["before", "after"]) -> None:
        super().__init__(name)
        self.stall_on = stall_on
        self.when = when
        self.batches = 0
        self.stalled = asyncio.Event()
        self.release = asyncio.Event()
        self.server_pid = 0

    async def apply_envelopes(
        self,
        conn: asyncpg.Connection,
        events: Sequence[RecordedEnvelope],
        tables: Mapping[str, str],
    ) -> None:
        await self._stalling(conn, super().apply_envelopes(conn, events, tables))

    async def fold_window(
        self,
        conn: asyncpg.Connection,
        tables: Mapping[str, str],
        after: LogPosition,
        through: LogPosition,
    ) -> None:
        # A replay's batches: each window is folded in the database.
        await self._stalling(conn, super().fold_window(conn, tables, after, through))

    async def _stalling(self, conn: asyncpg.Connection, write: Coroutine[Any, Any, None]) -> None:
        self.batches += 1
        if self.when == "after":
            await write
        if self.batches == self.stall_on:
            self.server_pid = conn.get_server_pid()
            self.stalled.set()
            await self.release.wait()
        if self.when == "before":
            await write


# --- the live runner --------------------------------------------------------------------


async def test_runner_applies_events_and_advances_checkpoint_with_them(
    store: EventStore, writer_store: EventStore
) -> None:
    """A caught-up runner's rows match the log and its checkpoint is the log's last event."""
    writer = Writer(writer_store, seed=1)
    await writer.write(300)
    app = writer.apps[0]
    await writer_store.append(
        f"application-{app}",
        new_events([ApplicationDisabled(application_id=app)]),
        expected_version=ANY,
    )
    stats = ProjectionRunner(store, StreamStatsProjection(), batch_size=64)
    apps = ProjectionRunner(store, ApplicationsProjection(), batch_size=64)
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        applied = await stats.run_until_caught_up()
        await apps.run_until_caught_up()

    total = await store.pool.fetchval("SELECT count(*) FROM events")
    assert applied == total
    assert await rows_of(store.pool, "stream_stats") == await stream_stats_from_log(store.pool)
    async with store.pool.acquire() as conn:
        state = await load_state(conn, "stream_stats")
    assert state is not None
    assert state.checkpoint == await log_head(store.pool)
    app_row = await store.pool.fetchrow(
        "SELECT disabled, labels, path FROM applications WHERE application_id = $1", app
    )
    assert app_row is not None
    assert app_row["disabled"] is True
    assert app_row["path"] == f"apps/{app}"
    assert await store.pool.fetchval("SELECT count(*) FROM applications") == len(writer.apps)


@pytest.mark.parametrize("interruption", ["cancel", "kill_connection"])
async def test_interrupted_batch_rolls_back_with_its_checkpoint(
    store: EventStore, writer_store: EventStore, interruption: str
) -> None:
    """A runner stopped mid-batch commits nothing of it; a restart applies each event once."""
    await Writer(writer_store, seed=2).write(400)
    stalling = StallingStreamStats("stream_stats", stall_on=3, when="after")
    first = ProjectionRunner(store, stalling, batch_size=50)
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        await stalling.stalled.wait()

    # Two batches committed; the third is written but not committed.
    assert await store.pool.fetchval("SELECT sum(events) FROM stream_stats") == 100
    async with store.pool.acquire() as conn:
        state = await load_state(conn, "stream_stats")
    assert state is not None
    assert state.checkpoint.global_position > 0
    assert first.applied == 100

    if interruption == "kill_connection":
        assert await store.pool.fetchval("SELECT pg_terminate_backend($1)", stalling.server_pid)
    task.cancel()
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        outcome = await asyncio.gather(task, return_exceptions=True)
    assert isinstance(outcome[0], asyncio.CancelledError)

    async with store.pool.acquire() as conn:
        after = await load_state(conn, "stream_stats")
    assert after == state
    restarted = ProjectionRunner(store, StreamStatsProjection(), batch_size=50)
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        await restarted.run_until_caught_up()
    total = await store.pool.fetchval("SELECT count(*) FROM events")
    assert restarted.applied == total - 100
    assert await rows_of(store.pool, "stream_stats") == await stream_stats_from_log(store.pool)


async def test_two_runner_replicas_apply_each_event_once(
    store: EventStore, writer_store: EventStore
) -> None:
    """Two replicas of a runner, racing during writes, produce what one runner produces."""
    replicas = [
        ProjectionRunner(store, StreamStatsProjection(), batch_size=20),
        ProjectionRunner(store, StreamStatsProjection(), batch_size=20),
        ProjectionRunner(store, ApplicationsProjection(), batch_size=20),
        ProjectionRunner(store, ApplicationsProjection(), batch_size=20),
    ]
    single = [
        ProjectionRunner(store, StreamStatsProjection("stream_stats_single"), batch_size=20),
        ProjectionRunner(store, ApplicationsProjection("applications_single"), batch_size=20),
    ]
    writers = [Writer(writer_store, seed=10 + i) for i in range(4)]
    async with (
        running(*(r.run for r in [*replicas, *single]), stop_within_s=PHASE_TIMEOUT_S),
        asyncio.timeout(PHASE_TIMEOUT_S),
    ):
        await asyncio.gather(*(w.write(300) for w in writers))
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        for runner in [replicas[0], replicas[2], *single]:
            await runner.run_until_caught_up()

    total = await store.pool.fetchval("SELECT count(*) FROM events")
    assert replicas[0].applied + replicas[1].applied == total
    assert replicas[2].applied + replicas[3].applied == total
    assert await rows_of(store.pool, "stream_stats") == await stream_stats_from_log(store.pool)
    assert await rows_of(store.pool, "stream_stats") == await rows_of(
        store.pool, "stream_stats_single"
    )
    assert await rows_of(store.pool, "applications") == await rows_of(
        store.pool, "applications_single"
    )


# --- replay -----------------------------------------------------------------------------


async def test_a_runner_waits_out_a_rebuild_longer_than_its_statement_timeout(
    projector_database_url: str, schema: str, writer_store: EventStore
) -> None:
    """A replay holds the projection's row for its whole rebuild; a live runner whose lock
    wait outlasts its statement timeout backs off and goes on, it does not crash."""
    pool = await create_pool(
        projector_database_url, schema=schema, min_size=1, max_size=4, statement_timeout_s=0.3
    )
    try:
        store = EventStore(pool, default_registry())
        runner = ProjectionRunner(store, StreamStatsProjection(), batch_size=50)
        await runner.install()
        writer = Writer(writer_store, seed=7)
        await writer.write(20)
        async with running(runner.run, stop_within_s=PHASE_TIMEOUT_S):
            async with pool.acquire() as holder, holder.transaction():
                # What a rebuild does to the row, held longer than the runner's timeout.
                await holder.execute("SET LOCAL statement_timeout = 0")
                await load_state(holder, runner.projection.name, for_update=True)
                await writer.write(5)
                await asyncio.sleep(1.0)  # the subject: a lock held past 0.3 s, three times over
            await wait_until(
                lambda: runner.applied == writer.written,
                within_s=PHASE_TIMEOUT_S,
                what=lambda: f"the runner applied {runner.applied} of {writer.written}",
            )
    finally:
        await pool.close()


async def test_replay_from_zero_equals_the_live_projection(
    store: EventStore, writer_store: EventStore
) -> None:
    """Replay determinism: a projection rebuilt from zero equals the live one."""
    # Rebuilt twice while four writers keep appending; compared with a copy that a
    # live runner kept all along, with a fold from scratch, and with the log itself.
    replayed = [StreamStatsProjection(), ApplicationsProjection()]
    live_only = [StreamStatsProjection("stream_stats_live"), ApplicationsProjection("apps_live")]
    runners = [ProjectionRunner(store, p, batch_size=100) for p in [*replayed, *live_only]]
    stop_writing = asyncio.Event()
    writers = [Writer(writer_store, seed=20 + i) for i in range(4)]
    await writers[0].write(200)  # so that even the first replay has a log to fold
    async with (
        running(*(r.run for r in runners), stop_within_s=PHASE_TIMEOUT_S),
        asyncio.timeout(PHASE_TIMEOUT_S),
    ):
        writing = [asyncio.create_task(w.write_until(stop_writing, 750)) for w in writers]
        # Replay twice while the writers keep writing: once onto a log in motion, once
        # over a generation that was itself rebuilt.
        for _ in range(2):
            for projection in replayed:
                result = await replay(store, projection, batch_size=250)
                assert result.events > 0
            assert not any(w.done() for w in writing)
        stop_writing.set()
        await asyncio.gather(*writing)
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        for runner in runners:
            await runner.run_until_caught_up()
        from_scratch = [
            StreamStatsProjection("stream_stats_scratch"),
            ApplicationsProjection("apps_scratch"),
        ]
        for projection in from_scratch:
            await ProjectionRunner(store, projection, batch_size=500).run_until_caught_up()

    assert sum(w.written for w in writers) >= 3000
    async with store.pool.acquire() as conn:
        for projection in replayed:
            state = await load_state(conn, projection.name)
            assert state is not None
            assert state.generation == 3
    stats = await rows_of(store.pool, "stream_stats")
    assert stats == await stream_stats_from_log(store.pool)
    assert stats == await rows_of(store.pool, "stream_stats_live")
    assert stats == await rows_of(store.pool, "stream_stats_scratch")
    apps = await rows_of(store.pool, "applications")
    assert len(apps) == sum(len(w.apps) for w in writers)
    assert apps == await rows_of(store.pool, "apps_live")
    assert apps == await rows_of(store.pool, "apps_scratch")
    # Only the live generation's tables are left.
    tables = await store.pool.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
        "AND tablename ~ '^stream_stats_g[0-9]+$' ORDER BY 1"
    )
    assert [t["tablename"] for t in tables] == ["stream_stats_g3"]


async def test_readers_never_see_a_partial_projection_during_replay(
    store: EventStore, writer_store: EventStore
) -> None:
    """A reader polling the view while it is rebuilt and swapped never sees it shrink."""
    writer = Writer(writer_store, seed=30)
    await writer.write(1500)
    runner = ProjectionRunner(store, StreamStatsProjection(), batch_size=100)
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        await runner.run_until_caught_up()

    seen: list[tuple[int, int]] = []

    async def read_until_stopped(stop: asyncio.Event) -> None:
        async with store.pool.acquire() as conn:
            while not stop.is_set():
                row = await conn.fetchrow(
                    "SELECT count(*) AS streams, coalesce(sum(events), 0) AS events "
                    "FROM stream_stats"
                )
                seen.append((row["streams"], row["events"]))

    async with (
        running(
            runner.run,
            lambda stop: writer.write_until(stop, 0),
            read_until_stopped,
            stop_within_s=PHASE_TIMEOUT_S,
        ),
        asyncio.timeout(PHASE_TIMEOUT_S),
    ):
        for _ in range(3):
            await replay(store, StreamStatsProjection(), batch_size=100)

    assert len(seen) > 10
    assert seen[0][1] >= 1500
    assert all(later >= earlier for earlier, later in itertools.pairwise(seen))
    async with store.pool.acquire() as conn:
        state = await load_state(conn, "stream_stats")
    assert state is not None
    assert state.generation == 4


async def test_swap_catches_up_with_a_live_runner_that_got_ahead(
    store: EventStore, writer_store: EventStore
) -> None:
    """A swap first folds what the live runner applied after the build: never a step back."""
    writer = Writer(writer_store, seed=35)
    await writer.write(200)
    live = ProjectionRunner(store, StreamStatsProjection())
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        await live.run_until_caught_up()
    # The build reads the whole log as one batch, then waits before writing it.
    slow = StallingStreamStats("stream_stats", stall_on=1, when="before")
    rebuilding = asyncio.create_task(replay(store, slow, batch_size=10_000))
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        await slow.stalled.wait()
        await writer.write(100)
        assert await live.run_until_caught_up() >= 100
        slow.release.set()
        result = await rebuilding

    async with store.pool.acquire() as conn:
        state = await load_state(conn, "stream_stats")
    assert state is not None
    assert result.checkpoint == state.checkpoint == await log_head(store.pool)
    assert await rows_of(store.pool, "stream_stats") == await stream_stats_from_log(store.pool)


class WatchedDeployments(DeploymentsProjection):
    """The deployments projection, keeping the event types each batch gave it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    async def apply_batch(
        self,
        conn: asyncpg.Connection,
        events: Sequence[RecordedEvent],
        tables: Mapping[str, str],
    ) -> None:
        self.seen += [event.event_type for event in events]
        await super().apply_batch(conn, events, tables)


async def test_a_replay_reads_only_its_event_types_yet_passes_over_the_whole_log(
    store: EventStore, writer_store: EventStore
) -> None:
    """A projection with `event_types` is rebuilt from those alone, in windows of the whole
    log: windows of nothing but ignored events, and a log that ends with them, still bring
    its checkpoint to the log's head, with the rows of a live runner that was given all."""
    for n in range(6):
        deployment, app = f"d{n}", f"app{n % 2}"
        stages: list[Event] = []
        for i in range(4):  # longer than a window: some windows hold no deployment event
            stages += [
                StageStarted(deployment_id=deployment, stage_id=f"s{i}", started_at=T0),
                StageCompleted(
                    deployment_id=deployment,
                    stage_id=f"s{i}",
                    status=vocabulary.StageStatus("SUCCESS"),
                ),
            ]
        done = DeploymentCompleted(
            deployment_id=deployment,
            application_id=app,
            status=vocabulary.DeploymentStatus("FAILURE" if n % 3 else "SUCCESS"),
        )
        await writer_store.append(
            f"deployment-{deployment}",
            new_events([triggered(deployment, app), *stages, done, *stages[:3]]),
            expected_version=NO_STREAM,
        )
    live = ProjectionRunner(store, DeploymentsProjection())
    kept_along = ProjectionRunner(store, DeploymentsProjection("deployments_all"))
    rebuilt = WatchedDeployments()
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        await live.run_until_caught_up()
        await kept_along.run_until_caught_up()
        result = await replay(store, rebuilt, batch_size=3)

    total = await store.pool.fetchval("SELECT count(*) FROM events")
    assert result.events == total == 6 * 13
    assert result.checkpoint == await log_head(store.pool)
    wanted = event_tags(rebuilt)
    assert wanted is not None
    assert rebuilt.seen and set(rebuilt.seen) <= set(wanted)
    assert len(rebuilt.seen) == 6 * 2  # the trigger and the completion of each
    rows = await rows_of(store.pool, "deployments")
    assert len(rows) == 6
    assert rows == await rows_of(store.pool, "deployments_all")


async def index_definitions(pool: asyncpg.Pool, table: str) -> list[str]:
    """The indexes of `table`, with its name taken out so that generations compare."""
    rows = await pool.fetch(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1",
        table,
    )
    return sorted(
        r["indexdef"].replace(table, "T").split(" ON ", 1)[1].replace("T_pkey", "") for r in rows
    )


async def test_a_replayed_generation_has_every_index_of_a_new_one_and_statistics(
    store: EventStore, writer_store: EventStore
) -> None:
    """A replay fills its tables first and builds their plain indexes after: the rebuilt
    generation ends up indexed exactly as the first one was created."""
    await Writer(writer_store, seed=37).write(100)
    await ProjectionRunner(store, DeploymentsProjection()).install()
    first = await index_definitions(store.pool, "deployments_g1")
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        await replay(store, DeploymentsProjection(), batch_size=30)
    assert len(first) == 4  # the primary key and three plain indexes
    assert await index_definitions(store.pool, "deployments_g2") == first
    # Analyzed before readers plan on it: a table never analyzed has reltuples -1.
    assert await store.pool.fetchval(
        "SELECT reltuples FROM pg_class WHERE oid = 'deployments_g2'::regclass"
    ) == await store.pool.fetchval("SELECT count(*) FROM deployments")


async def test_a_replay_on_a_pool_of_one_connection_reads_each_window_in_turn(
    projector_database_url: str, schema: str, writer_store: EventStore
) -> None:
    """Reading ahead takes a second connection; with a pool of one, the replay reads on its
    own connection between batches instead of waiting for a connection that never frees."""
    await Writer(writer_store, seed=38).write(300)
    pool = await create_pool(projector_database_url, schema=schema, min_size=1, max_size=1)
    try:
        store = EventStore(pool, default_registry())
        async with asyncio.timeout(PHASE_TIMEOUT_S):
            result = await replay(store, ApplicationsProjection(), batch_size=50)
            await ProjectionRunner(store, ApplicationsProjection("apps_live")).run_until_caught_up()
        assert result.events == await pool.fetchval("SELECT count(*) FROM events")
        assert await rows_of(pool, "applications") == await rows_of(pool, "apps_live")
    finally:
        await pool.close()


async def test_a_second_concurrent_replay_is_refused(
    store: EventStore, writer_store: EventStore
) -> None:
    """While one replay of a projection runs, another raises ReplayInProgress."""
    await Writer(writer_store, seed=40).write(100)
    stalling = StallingStreamStats("stream_stats", stall_on=1, when="after")
    first = asyncio.create_task(replay(store, stalling, batch_size=10))
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        await stalling.stalled.wait()
        with pytest.raises(ReplayInProgress):
            await replay(store, StreamStatsProjection())
        stalling.release.set()
        result = await first
    assert result.generation == 2
    assert await rows_of(store.pool, "stream_stats") == await stream_stats_from_log(store.pool)


async def test_replay_as_another_role_than_the_owner_is_refused(
    store: EventStore, database_url: str, schema: str
) -> None:
    """Replaying with a URL of another role is a configuration error, before anything is built."""
    await ProjectionRunner(store, StreamStatsProjection()).install()
    superuser_pool = await create_pool(database_url, schema=schema, min_size=1, max_size=1)
    try:
        superuser_store = EventStore(superuser_pool, default_registry())
        with pytest.raises(ConfigError, match="replay it as that role"):
            await replay(superuser_store, StreamStatsProjection())
    finally:
        await superuser_pool.close()
    async with store.pool.acquire() as conn:
        state = await load_state(conn, "stream_stats")
    assert state is not None
    assert state.generation == 1


async def test_an_idle_runner_takes_no_transaction_ids(
    store: EventStore, writer_store: EventStore
) -> None:
    """Polling a caught-up projection neither locks its row nor consumes transaction ids."""
    await Writer(writer_store, seed=45).write(50)
    runner = ProjectionRunner(store, StreamStatsProjection())
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        await runner.run_until_caught_up()
    next_xid = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text"
    before = await store.pool.fetchval(next_xid)
    assert [await runner.step() for _ in range(20)] == [0] * 20
    assert await store.pool.fetchval(next_xid) == before


async def test_an_idle_poll_reads_a_few_index_pages_however_long_the_log(
    store: EventStore, writer_store: EventStore
) -> None:
    """The caught-up peek bounds its scan of the log by the checkpoint: a handful of pages,
    not the whole table (which every poll of every projection read before)."""
    for batch in range(40):
        await writer_store.append(
            f"application-bulk{batch}",
            new_events([registered(f"bulk{batch}", random.Random(i)) for i in range(100)]),
            expected_version=NO_STREAM,
        )
    runner = ProjectionRunner(store, StreamStatsProjection())
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        await runner.run_until_caught_up()
    plan = await store.pool.fetchval(
        f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {runner_module.PENDING}", [runner.projection.name]
    )
    top = json.loads(plan)[0]["Plan"]
    pages = top["Shared Hit Blocks"] + top["Shared Read Blocks"]
    # 4,000 events fill well over 100 pages; the index path reads the state row and 2–3
    # index pages.
    assert await store.pool.fetchval("SELECT pg_relation_size('events') / 8192") > 100
    assert pages <= 10, json.dumps(top, indent=1)


class StreamStatsV2(StreamStatsProjection):
    """A newer stream_stats whose table gained a column."""

    version = 2

    def __init__(self) -> None:
        super().__init__()
        ddl = next(iter(self.tables.values()))
        self.tables = {
            self.name: ddl.replace(
                "last_recorded_at   timestamptz NOT NULL",
                "last_recorded_at   timestamptz NOT NULL,\n  note text",
            )
        }


async def test_runner_of_a_newer_version_rebuilds_and_an_older_one_refuses(
    store: EventStore, writer_store: EventStore
) -> None:
    """Installing a newer projection version rebuilds it; the older code then refuses to run."""
    await Writer(writer_store, seed=50).write(200)
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        await ProjectionRunner(store, StreamStatsProjection()).run_until_caught_up()
        state = await ProjectionRunner(store, StreamStatsV2()).install()
    assert (state.version, state.generation) == (2, 2)
    columns = await store.pool.fetch(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = 'stream_stats'"
    )
    assert "note" in {c["column_name"] for c in columns}
    assert await rows_of(store.pool, "stream_stats") == [
        (*row, None) for row in await stream_stats_from_log(store.pool)
    ]
    with pytest.raises(ProjectionOutdated, match="version 2"):
        await ProjectionRunner(store, StreamStatsProjection()).step()


def test_projection_definitions_are_checked() -> None:
    """Bad names, versions, DDL and clashing tables are refused with the rule they break."""
    check_projection(StreamStatsProjection())
    with pytest.raises(ValueError, match="lowercase"):
        check_projection(StreamStatsProjection("Bad-Name"))
    with pytest.raises(ValueError, match="_g<number>"):
        check_projection(StreamStatsProjection("stats_g2"))
    bad_ddl = StreamStatsProjection()
    bad_ddl.tables = {"stream_stats": "CREATE TABLE stream_stats (x int)"}
    with pytest.raises(ValueError, match="table"):
        check_projection(bad_ddl)
    with pytest.raises(ValueError, match="two projections"):
        check_unique([StreamStatsProjection(), StreamStatsProjection()])
    clash = StreamStatsProjection("other")
    clash.tables = dict(StreamStatsProjection().tables)
    with pytest.raises(ValueError, match="both"):
        check_unique([StreamStatsProjection(), clash])


# --- the command line -------------------------------------------------------------------


async def test_slipway_replay_command_rebuilds_every_projection(
    store: EventStore, writer_store: EventStore, projector_database_url: str, schema: str
) -> None:
    """`slipway replay` rebuilds all projections in the schema, reports each, and exits 0."""
    await Writer(writer_store, seed=60).write(200)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "slipway_cli",
        "replay",
        "--database-url",
        projector_database_url,
        "--schema",
        schema,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    total = await store.pool.fetchval("SELECT count(*) FROM events")
    *lines, snapshots = out.decode().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "applications",
        "stream_stats",
        "deployments",
        "insights",
        "discovered_configs",
    ]
    assert all(f"generation 2, {total} events in" in line for line in lines)
    assert snapshots.startswith("snapshots: ")  # and the long streams' snapshots rebuilt
    assert await rows_of(store.pool, "stream_stats") == await stream_stats_from_log(store.pool)


def test_slipway_replay_refuses_an_unknown_projection(capsys: pytest.CaptureFixture[str]) -> None:
    """Naming a projection that does not exist is a configuration error (exit 2)."""
    code = cli_main(["replay", "--projection", "nope", "--database-url", "postgresql://x/y"])
    assert code == 2
    assert "unknown projection(s) nope" in capsys.readouterr().err


# --- state as of ------------------------------------------------------------------------


@dataclass(frozen=True)
class AppState:
    registered: bool = False
    name: str = ""
    disabled: bool = False


def evolve(state: AppState, event: Event) -> AppState:
    match event:
        case ApplicationRegistered(name=name):
            return AppState(registered=True, name=name, disabled=state.disabled)
        case ApplicationDisabled():
            return AppState(registered=state.registered, name=state.name, disabled=True)
        case _:
            return state


def test_fold_applies_events_in_order() -> None:
    """fold threads the state through evolve, event by event, starting from the initial state."""
    assert fold(lambda s, e: s * 10 + e, 0, [1, 2, 3]) == 123
    assert fold(evolve, AppState(), []) == AppState()


async def test_state_as_of_returns_earlier_states_for_earlier_points(
    writer_store: EventStore,
) -> None:
    """state_as_of folds only the events up to the given position, log position or time."""
    app = new_id()
    stream = f"application-{app}"
    for change in [
        ApplicationRegistered(application_id=app, name="one", repository_id="r", path="p"),
        ApplicationRegistered(application_id=app, name="two", repository_id="r", path="p"),
        ApplicationDisabled(application_id=app),
    ]:
        await writer_store.append(stream, new_events([change]), expected_version=ANY)
    recorded = await writer_store.read_stream(stream)
    expected = [
        AppState(registered=True, name="one"),
        AppState(registered=True, name="two"),
        AppState(registered=True, name="two", disabled=True),
    ]

    for event, state in zip(recorded, expected, strict=True):
        assert (
            await state_as_of(
                writer_store, stream, evolve, AppState(), position=event.global_position
            )
            == state
        )
        assert (
            await state_as_of(writer_store, stream, evolve, AppState(), at=event.recorded_at)
            == state
        )
        as_of_log = LogPosition(event.tx_id, event.global_position)
        assert (
            await state_as_of(writer_store, stream, evolve, AppState(), position=as_of_log) == state
        )
    before = recorded[0].global_position - 1
    assert (
        await state_as_of(writer_store, stream, evolve, AppState(), position=before) == AppState()
    )
    assert await state_as_of(writer_store, stream, evolve, AppState()) == expected[-1]
    with pytest.raises(ValueError, match="timezone"):
        await state_as_of(
            writer_store,
            stream,
            evolve,
            AppState(),
            at=recorded[0].recorded_at.replace(tzinfo=None),
        )
