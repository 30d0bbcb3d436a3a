"""The applications projection writes a run of deployment events in two statements.

A replay of a long log is bound by its round trips to PostgreSQL: events the
projection ignores (stages, analyses) must not split a run of deployment
events into one read and one write per event.
"""

from __future__ import annotations

from datetime import UTC, datetime

from asyncpg.connection import LoggedQuery

from shared.eventlog import NO_STREAM, EventStore, new_events
from shared.events import vocabulary
from shared.events.catalog import (
    ApplicationRegistered,
    DeploymentCompleted,
    DeploymentStarted,
    DeploymentTriggered,
    StageCompleted,
    StageStarted,
)
from shared.projections.applications import ApplicationsProjection
from shared.projections.state import install


async def test_stage_events_do_not_split_a_run_of_deployment_events(
    projector_store: EventStore, store: EventStore
) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    await store.append(
        "application-web",
        new_events(
            [ApplicationRegistered(application_id="web", name="web", repository_id="r", path="web")]
        ),
        expected_version=NO_STREAM,
    )
    await store.append(
        "deployment-d1",
        new_events(
            [
                DeploymentTriggered(
                    deployment_id="d1",
                    application_id="web",
                    trigger=vocabulary.Trigger.ON_COMMIT,
                    commit_hash="c1",
                ),
                DeploymentStarted(deployment_id="d1", application_id="web", started_at=at),
                StageStarted(deployment_id="d1", stage_id="s0", started_at=at),
                StageCompleted(
                    deployment_id="d1", stage_id="s0", status=vocabulary.StageStatus("SUCCESS")
                ),
                StageStarted(deployment_id="d1", stage_id="s1", started_at=at),
                StageCompleted(
                    deployment_id="d1", stage_id="s1", status=vocabulary.StageStatus("SUCCESS")
                ),
                DeploymentCompleted(
                    deployment_id="d1",
                    application_id="web",
                    status=vocabulary.DeploymentStatus("SUCCESS"),
                    commit_hash="c1",
                ),
            ]
        ),
        expected_version=NO_STREAM,
    )
    projection = ApplicationsProjection()
    history = await projector_store.read_stream("deployment-d1")
    statements: list[str] = []
    async with projector_store.pool.acquire() as conn:
        live = await install(conn, projection)
        tables = live.physical_tables()
        async with conn.transaction():
            await projection.apply_batch(
                conn, await projector_store.read_stream("application-web"), tables
            )

        def logged(record: LoggedQuery) -> None:
            statements.append(record.query)

        conn.add_query_logger(logged)
        async with conn.transaction():
            await projection.apply_batch(conn, history, tables)
        conn.remove_query_logger(logged)
        row = await conn.fetchrow(f'SELECT sync_state FROM "{tables["applications"]}"')
    statements = [s for s in statements if s not in ("BEGIN;", "COMMIT;")]
    assert len(statements) == 2, statements  # read the sync states, write the changed ones
    assert row is not None and row["sync_state"] != "UNKNOWN"
