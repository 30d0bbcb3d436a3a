"""`ProjectionGroup` (the projector's runner) against a real PostgreSQL: one batch for several
projections builds what a runner per projection builds, each event applied once per
projection; a projection held elsewhere is passed over, not waited for; a failure rolls back
every projection's part of the batch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import asyncpg
import pytest

from shared.db import create_pool
from shared.eventlog import ANY, EventStore, new_events
from shared.events import RecordedEvent
from shared.events.catalog import ApplicationRegistered, DeploymentCompleted, default_registry
from shared.events.vocabulary import DeploymentStatus
from shared.projections import ProjectionRunner, load_state
from shared.projections.applications import ApplicationsProjection
from shared.projections.base import Projection
from shared.projections.deployments import DeploymentsProjection
from shared.projections.group import ProjectionGroup
from shared.projections.stream_stats import StreamStatsProjection
from tests.support import running
from tests.support.deployment_events import pipeline, planned, triggered

PHASE_TIMEOUT_S = 60


@pytest.fixture
async def writer(app_database_url: str, schema: str) -> AsyncIterator[EventStore]:
    """A store on a pool of its own, so writing never waits for the runners' connections."""
    pool = await create_pool(app_database_url, schema=schema, min_size=1, max_size=4)
    yield EventStore(pool, default_registry())
    await pool.close()


async def write(store: EventStore, round_: int, apps: int = 6) -> None:
    """Registrations, and a deployment per application triggered, planned and completed."""
    for n in range(apps):
        app = f"app{n}"
        await store.append(
            f"application-{app}",
            new_events(
                [
                    ApplicationRegistered(
                        application_id=app,
                        name=app,
                        repository_id="config",
                        path=f"{app}/dev",
                        labels=(("round", str(round_)),),
                    )
                ]
            ),
            expected_version=ANY,
        )
        deployment = f"d{round_}x{n}"
        await store.append(
            f"deployment-{deployment}",
            new_events(
                [
                    triggered(deployment, app, commit=f"c{round_}"),
                    planned(deployment, pipeline("K8S_SYNC"), app, commit=f"c{round_}"),
                ]
            ),
            expected_version=ANY,
        )
        if n % 2:
            completed = DeploymentCompleted(
                deployment_id=deployment,
                application_id=app,
                status=DeploymentStatus.SUCCESS,
                commit_hash=f"c{round_}",
            )
            await store.append(
                f"deployment-{deployment}", new_events([completed]), expected_version=ANY
            )


def live() -> list[Projection]:
    return [ApplicationsProjection(), DeploymentsProjection(), StreamStatsProjection()]


def references() -> list[Projection]:
    """The same folds under other names: built by a runner each, to compare with."""
    return [
        ApplicationsProjection("applications_ref"),
        DeploymentsProjection("deployments_ref"),
        StreamStatsProjection("stream_stats_ref"),
    ]


async def rows(pool: asyncpg.Pool, view: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await pool.fetch(f'SELECT * FROM "{view}" ORDER BY 1')]


async def assert_same_as_references(store: EventStore) -> None:
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        for reference in references():
            await ProjectionRunner(store, reference).run_until_caught_up()
    for projection, reference in zip(live(), references(), strict=True):
        built = await rows(store.pool, projection.name)
        assert built, projection.name
        assert built == await rows(store.pool, reference.name), projection.name


async def test_a_group_builds_what_a_runner_per_projection_builds(
    projector_store: EventStore, writer: EventStore
) -> None:
    group = ProjectionGroup(projector_store, live(), batch_size=7)
    async with running(group.run):
        for round_ in range(3):
            await write(writer, round_)
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        await group.run_until_caught_up()
    await assert_same_as_references(projector_store)
    events = await writer.pool.fetchval("SELECT count(*) FROM events")
    assert group.applied["stream_stats"] == events


async def test_projections_at_different_checkpoints_each_apply_only_what_is_new_to_them(
    projector_store: EventStore, writer: EventStore
) -> None:
    """The group reads from the oldest checkpoint; one ahead must not apply its events twice."""
    group = ProjectionGroup(projector_store, live(), batch_size=10)
    await group.install()
    await write(writer, 0)
    # stream_stats alone moves ahead (as a runner of the previous build would have).
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        await group.runners["stream_stats"].run_until_caught_up()
    await write(writer, 1)
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        await group.run_until_caught_up()
    await assert_same_as_references(projector_store)


async def test_a_projection_held_by_another_transaction_is_passed_over_then_caught_up(
    projector_store: EventStore, writer: EventStore, projector_database_url: str, schema: str
) -> None:
    """A replay holds its projection's row for the whole rebuild: the others go on."""
    group = ProjectionGroup(projector_store, live())
    await group.install()
    await write(writer, 0)
    holder = await asyncpg.connect(projector_database_url)
    try:
        await holder.execute(f'SET search_path = "{schema}"')
        async with holder.transaction():
            await holder.execute(
                "SELECT 1 FROM projection_state WHERE name = 'deployments' FOR UPDATE"
            )
            async with asyncio.timeout(PHASE_TIMEOUT_S):
                await group.run_until_caught_up()
            state = await load_state(holder, "deployments")
            assert state is not None and state.checkpoint.global_position == 0
            assert group.applied["deployments"] == 0
            assert group.applied["applications"] > 0
    finally:
        await holder.close()
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        await group.run_until_caught_up()
    await assert_same_as_references(projector_store)


class FailingDeployments(DeploymentsProjection):
    """deployments that fails its batches while `failing` is set."""

    failing = True

    async def apply_batch(
        self,
        conn: asyncpg.Connection,
        events: Sequence[RecordedEvent],
        tables: Mapping[str, str],
    ) -> None:
        await super().apply_batch(conn, events, tables)
        if self.failing:
            raise RuntimeError("the fold failed")


async def test_a_failure_rolls_back_every_projections_part_of_the_batch(
    projector_store: EventStore, writer: EventStore
) -> None:
    failing = FailingDeployments()
    # Applications comes before deployments, stream_stats after: both sides of the failure.
    group = ProjectionGroup(
        projector_store, [ApplicationsProjection(), failing, StreamStatsProjection()]
    )
    await group.install()
    await write(writer, 0)
    with pytest.raises(RuntimeError, match="the fold failed"):
        await group.step()
    async with projector_store.pool.acquire() as conn:
        for name in ("applications", "deployments", "stream_stats"):
            state = await load_state(conn, name)
            assert state is not None and state.checkpoint.global_position == 0, name
            assert await rows(projector_store.pool, name) == [], name
    assert group.applied == {"applications": 0, "deployments": 0, "stream_stats": 0}
    failing.failing = False
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        await group.run_until_caught_up()
    await assert_same_as_references(projector_store)


async def test_two_group_replicas_apply_each_event_once(
    projector_store: EventStore, writer: EventStore
) -> None:
    first = ProjectionGroup(projector_store, live(), batch_size=5, idle_sleep_s=0.01)
    second = ProjectionGroup(projector_store, live(), batch_size=5, idle_sleep_s=0.01)
    await first.install()
    async with running(first.run, second.run):
        for round_ in range(3):
            await write(writer, round_)
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        await first.run_until_caught_up()
    events = await writer.pool.fetchval("SELECT count(*) FROM events")
    assert first.applied["stream_stats"] + second.applied["stream_stats"] == events
    await assert_same_as_references(projector_store)


async def test_a_projection_far_behind_does_not_hold_the_others_still(
    projector_store: EventStore, writer: EventStore
) -> None:
    """A projection catching up from far behind (new, with an empty table) takes turns with
    the others: their new events are applied by the next batch, not after the catch-up."""
    group = ProjectionGroup(projector_store, live(), batch_size=5)
    await group.install()
    for round_ in range(3):
        await write(writer, round_)
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        for name in ("applications", "stream_stats"):
            await group.runners[name].run_until_caught_up()
    await write(writer, 3)
    await group.step()  # deployments, from its checkpoint at the start of the log
    assert group.applied == {"applications": 0, "deployments": 5, "stream_stats": 0}
    await group.step()  # the others, from theirs
    assert group.applied["stream_stats"] == 5
    assert group.applied["deployments"] == 5
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        await group.run_until_caught_up()
    await assert_same_as_references(projector_store)
