"""The applications and deployments projections write a batch in two statements.

A replay of a long log is bound by its round trips to PostgreSQL: events the
projection ignores (stages, analyses) must not split a run of deployment
events into one read and one write per event.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from asyncpg.connection import LoggedQuery

from shared.eventlog import NO_STREAM, EventStore, new_events
from shared.events import vocabulary
from shared.events.base import Event
from shared.events.catalog import (
    ApplicationRegistered,
    DeploymentCompleted,
    DeploymentPlanFailed,
    DeploymentPlanned,
    DeploymentQueued,
    DeploymentRollingBack,
    DeploymentStarted,
    DeploymentTriggered,
    StageCompleted,
    StageStarted,
)
from shared.projections.applications import ApplicationsProjection
from shared.projections.deployments import DeploymentsProjection
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


def lifecycles(at: datetime) -> dict[str, list[Event]]:
    """Deployments' streams with late, repeated and out-of-order events in them."""

    def triggered(d: str) -> DeploymentTriggered:
        return DeploymentTriggered(
            deployment_id=d,
            application_id="web",
            trigger=vocabulary.Trigger.ON_COMMIT,
            commit_hash=f"c-{d}",
            commit_message=f"bump {d}",
            commander="ci",
        )

    def planned(d: str) -> DeploymentPlanned:
        return DeploymentPlanned(
            deployment_id=d,
            application_id="web",
            commit_hash=f"c-{d}",
            strategy=vocabulary.Strategy("pipeline"),
            summary=f"plan of {d}",
            reason="the image changed",
            stages=(),
        )

    def done(d: str, status: str, reason: str = "") -> DeploymentCompleted:
        return DeploymentCompleted(
            deployment_id=d,
            application_id="web",
            status=vocabulary.DeploymentStatus(status),
            commit_hash=f"c-{d}",
            reason=reason,
        )

    def started(d: str, seconds: int) -> DeploymentStarted:
        return DeploymentStarted(
            deployment_id=d, application_id="web", started_at=at + timedelta(seconds=seconds)
        )

    return {
        "d1": [
            triggered("d1"),
            DeploymentQueued(deployment_id="d1", application_id="web", behind_deployment_id="d0"),
            planned("d1"),
            started("d1", 1),
            started("d1", 2),  # a second start keeps the first time
            DeploymentRollingBack(deployment_id="d1", application_id="web", reason="analysis"),
            done("d1", "FAILURE"),
            done("d1", "SUCCESS", "late"),  # the first completion stands
        ],
        "d2": [planned("d2"), triggered("d2"), started("d2", 3), done("d2", "SUCCESS")],
        "d3": [
            started("d3", 4),  # before any row: nothing
            triggered("d3"),
            DeploymentPlanFailed(deployment_id="d3", application_id="web", reason="bad config"),
            planned("d3"),  # after the failure: the status stays
            DeploymentQueued(deployment_id="d3", application_id="web", behind_deployment_id="d1"),
        ],
        "d4": [triggered("d4"), triggered("d4")],
    }


async def rows_of(conn: asyncpg.Connection, table: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(f'SELECT * FROM "{table}" ORDER BY deployment_id')]


async def test_the_deployments_projection_writes_a_batch_in_two_statements(
    projector_store: EventStore, store: EventStore
) -> None:
    """A batch of many deployments' events is read in one statement and written in one, and
    gives the rows the events give applied one at a time."""
    for deployment_id, events in lifecycles(datetime(2026, 1, 1, tzinfo=UTC)).items():
        await store.append(
            f"deployment-{deployment_id}", new_events(events), expected_version=NO_STREAM
        )
    history = await projector_store.read_all(limit=1_000)
    batched, one_by_one = DeploymentsProjection(), DeploymentsProjection("deployments_one")
    statements: list[str] = []
    async with projector_store.pool.acquire() as conn:
        tables = (await install(conn, batched)).physical_tables()
        one_tables = (await install(conn, one_by_one)).physical_tables()

        def logged(record: LoggedQuery) -> None:
            statements.append(record.query)

        conn.add_query_logger(logged)
        async with conn.transaction():
            await batched.apply_batch(conn, history, tables)
        conn.remove_query_logger(logged)
        for event in history:
            async with conn.transaction():
                await one_by_one.apply(conn, event, one_tables)
        rows = await rows_of(conn, tables["deployments"])
        assert rows == await rows_of(conn, one_tables["deployments_one"])
    # asyncpg's one-off look-ups of the array types aside: the statements on the table.
    statements = [s for s in statements if tables["deployments"] in s]
    assert len(statements) == 2, statements  # read the rows, write the changed ones
    got = {r["deployment_id"]: r for r in rows}
    assert {d: r["status"] for d, r in got.items()} == {
        "d1": "FAILURE",
        "d2": "SUCCESS",
        "d3": "FAILURE",
        "d4": "PENDING",
    }
    d1, d2, d3 = got["d1"], got["d2"], got["d3"]
    assert d1["queued_behind"] is None and d1["reason"] == "late" and d1["commander"] == "ci"
    assert d1["started_at"] == datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert d1["completed_at"] is not None and d1["completed_at"] < d1["updated_at"]
    assert d2["trigger"] == "" and d2["summary"] == "plan of d2"  # the plan made the row
    assert d3["summary"] == "plan of d3" and d3["queued_behind"] is None
    assert d3["started_at"] is None and d3["reason"] == "bad config"
