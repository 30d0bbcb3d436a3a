"""A replay's write-behind (`shared.projections.replay._writer`): a `WriteBehind`
projection's window is folded while the window before is still being written. The
fold must take the rows of the write in flight from it, not from the table; writes
commit in log order, and a write that fails fails the replay (none is lost)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import asyncpg
import pytest

from shared.eventlog import NO_STREAM, EventStore, new_events
from shared.events import vocabulary
from shared.events.base import Event, RecordedEvent
from shared.events.catalog import (
    ApplicationRegistered,
    DeploymentCompleted,
    DeploymentPlanned,
    DeploymentStarted,
    DeploymentTriggered,
)
from shared.projections import ProjectionRunner, replay
from shared.projections.applications import ApplicationsProjection
from shared.projections.base import BatchWrite, WriteBehind
from shared.projections.deployments import DeploymentsProjection

DEPLOYMENTS = 3
EVENTS_PER_DEPLOYMENT = 4
WINDOW = 3  # smaller than a deployment: each deployment's row is folded in two windows


def _deployment(deployment: str, app: str) -> list[Event]:
    return [
        DeploymentTriggered(
            deployment_id=deployment,
            application_id=app,
            trigger=vocabulary.Trigger("on_commit"),
            commit_hash=f"c-{deployment}",
        ),
        DeploymentPlanned(
            deployment_id=deployment,
            application_id=app,
            commit_hash=f"c-{deployment}",
            strategy=vocabulary.Strategy("quick_sync"),
            summary=f"summary of {deployment}",
            reason="r",
            stages=(),
        ),
        DeploymentStarted(
            deployment_id=deployment,
            application_id=app,
            started_at=datetime(2026, 1, 1, tzinfo=UTC),
        ),
        DeploymentCompleted(
            deployment_id=deployment,
            application_id=app,
            status=vocabulary.DeploymentStatus("SUCCESS"),
            commit_hash=f"c-{deployment}",
        ),
    ]


async def _write_log(store: EventStore, *, register: bool) -> int:
    """The log: (a registration, then) deployments of one application; how many windows
    of `WINDOW` it makes (every event is one both projections fold)."""
    total = 0
    if register:
        await store.append(
            "application-a1",
            new_events(
                [
                    ApplicationRegistered(
                        application_id="a1", name="a1", repository_id="r", path="apps/a1"
                    )
                ]
            ),
            expected_version=NO_STREAM,
        )
        total += 1
    for n in range(DEPLOYMENTS):
        await store.append(
            f"deployment-d{n}", new_events(_deployment(f"d{n}", "a1")), expected_version=NO_STREAM
        )
        total += EVENTS_PER_DEPLOYMENT
    return -(-total // WINDOW)


class HeldWrites:
    """Holds each window's write until the next window has been folded (all but the
    last's), so that every fold but the first runs while the write before it is in
    flight — the case the write-behind must get right, made certain."""

    def __init__(self, windows: int) -> None:
        self.windows = windows
        self.folded = 0
        self.folded_with_unwritten = 0
        self.written: list[int] = []
        self.window_of: dict[int, int] = {}
        self.progress = asyncio.Condition()

    async def folded_one(self, batch: BatchWrite | None, unwritten: Mapping[str, object]) -> None:
        async with self.progress:
            self.folded += 1
            self.folded_with_unwritten += bool(unwritten)
            if batch is not None:
                self.window_of[id(batch)] = self.folded
            self.progress.notify_all()

    async def hold(self, batch: BatchWrite) -> None:
        window = self.window_of.get(id(batch))
        if window is None:  # a batch applied alone: written in its turn, never behind
            return
        async with self.progress:
            await self.progress.wait_for(lambda: self.folded > window or window == self.windows)
        self.written.append(window)


class HeldDeployments(DeploymentsProjection):
    def __init__(self, held: HeldWrites) -> None:
        super().__init__()
        self.held = held

    async def fold_batch(
        self,
        conn: asyncpg.Connection,
        events: Sequence[RecordedEvent],
        tables: Mapping[str, str],
        unwritten: Mapping[str, object],
    ) -> BatchWrite:
        batch = await super().fold_batch(conn, events, tables, unwritten)
        await self.held.folded_one(batch, unwritten)
        return batch

    async def write_batch(
        self, conn: asyncpg.Connection, batch: BatchWrite, tables: Mapping[str, str]
    ) -> None:
        await self.held.hold(batch)
        await super().write_batch(conn, batch, tables)


class HeldApplications(ApplicationsProjection):
    def __init__(self, held: HeldWrites) -> None:
        super().__init__()
        self.held = held

    async def fold_batch(
        self,
        conn: asyncpg.Connection,
        events: Sequence[RecordedEvent],
        tables: Mapping[str, str],
        unwritten: Mapping[str, object],
    ) -> BatchWrite | None:
        batch = await super().fold_batch(conn, events, tables, unwritten)
        await self.held.folded_one(batch, unwritten)
        return batch

    async def write_batch(
        self, conn: asyncpg.Connection, batch: BatchWrite, tables: Mapping[str, str]
    ) -> None:
        await self.held.hold(batch)
        await super().write_batch(conn, batch, tables)


@pytest.fixture
def writer(store: EventStore) -> EventStore:
    """The application's role, which appends (the projector's reads and replays)."""
    return store


async def _rows(pool: asyncpg.Pool, view: str) -> list[tuple[object, ...]]:
    return [tuple(r) for r in await pool.fetch(f'SELECT * FROM "{view}" ORDER BY 1')]


@pytest.mark.parametrize("kind", ["deployments", "applications"])
async def test_a_window_folded_while_the_one_before_is_written_gives_the_live_rows(
    writer: EventStore, projector_store: EventStore, kind: str
) -> None:
    store = projector_store
    windows = await _write_log(writer, register=kind == "applications")
    held = HeldWrites(windows)
    projection: WriteBehind
    if kind == "deployments":
        live: WriteBehind = DeploymentsProjection()
        projection = HeldDeployments(held)
    else:
        live, projection = ApplicationsProjection(), HeldApplications(held)
    await ProjectionRunner(store, live).run_until_caught_up()
    before = await _rows(store.pool, kind)

    async with asyncio.timeout(60):
        await replay(store, projection, batch_size=WINDOW)

    assert held.folded == windows
    # Every window but the first was folded with the write before it not committed (the
    # applications' first window holds the registration, applied alone).
    assert held.folded_with_unwritten == windows - 1 - (kind == "applications")
    assert held.written == sorted(held.written)  # committed in log order
    assert before and await _rows(store.pool, kind) == before


class FailingDeployments(DeploymentsProjection):
    """Its `fail_at`th write fails."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at = fail_at
        self.writes = 0

    async def write_batch(
        self, conn: asyncpg.Connection, batch: BatchWrite, tables: Mapping[str, str]
    ) -> None:
        self.writes += 1
        if self.writes == self.fail_at:
            raise RuntimeError(f"write {self.writes} failed")
        await super().write_batch(conn, batch, tables)


@pytest.mark.parametrize("fail_at", ["second", "last"])
async def test_a_failed_write_behind_fails_the_replay_and_swaps_nothing(
    writer: EventStore, projector_store: EventStore, fail_at: str
) -> None:
    store = projector_store
    windows = await _write_log(writer, register=False)
    await ProjectionRunner(store, DeploymentsProjection()).run_until_caught_up()
    before = await _rows(store.pool, "deployments")
    state = await store.pool.fetchrow("SELECT * FROM projection_state WHERE name = 'deployments'")

    failing = FailingDeployments(2 if fail_at == "second" else windows)
    with pytest.raises(RuntimeError, match=f"write {failing.fail_at} failed"):
        async with asyncio.timeout(60):
            await replay(store, failing, batch_size=WINDOW)

    assert await _rows(store.pool, "deployments") == before
    assert (
        await store.pool.fetchrow("SELECT * FROM projection_state WHERE name = 'deployments'")
        == state
    )
    assert await store.pool.fetchval("SELECT to_regclass('deployments_g2')") is None
    # The replay is not wedged: the next one swaps a whole generation in.
    await replay(store, DeploymentsProjection(), batch_size=WINDOW)
    assert await _rows(store.pool, "deployments") == before
