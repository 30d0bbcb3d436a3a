"""The applications, deployments and insights projections write a batch in a few statements.

A replay of a long log is bound by its round trips to PostgreSQL: events the
projection ignores (stages, analyses) must not split a run of deployment
events into one read and one write per event.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from asyncpg.connection import LoggedQuery

from services.api import reads
from shared.eventlog import ANY, NO_STREAM, EventStore, new_events
from shared.eventlog.position import START
from shared.events import vocabulary
from shared.events.base import Event
from shared.events.catalog import (
    ApplicationConfigObserved,
    ApplicationDeleted,
    ApplicationRegistered,
    CommitObserved,
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
from shared.projections.insights import (
    COMMITS,
    DEPLOYMENTS,
    FAILING,
    RECOVERIES,
    InsightsProjection,
)
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


def outcomes() -> list[tuple[str, Event]]:
    """Commits and deployments of two applications: failure streaks, recoveries, commit times
    known from the trigger, from an observed commit (not one observed after the completion),
    or not at all, repeated completions and a completion without its trigger."""

    def commit(h: str, repository: str, when: str) -> tuple[str, Event]:
        return f"commits-{repository}", CommitObserved(
            repository_id=repository, branch="main", commit_hash=h, committed_at=when
        )

    def triggered(d: str, app: str, h: str, when: str = "") -> tuple[str, Event]:
        return f"deployment-{d}", DeploymentTriggered(
            deployment_id=d,
            application_id=app,
            trigger=vocabulary.Trigger.ON_COMMIT,
            commit_hash=h,
            repository_id="r1",
            committed_at=when,
        )

    def done(d: str, app: str, h: str, status: str) -> tuple[str, Event]:
        return f"deployment-{d}", DeploymentCompleted(
            deployment_id=d,
            application_id=app,
            status=vocabulary.DeploymentStatus(status),
            commit_hash=h,
        )

    return [
        commit("h1", "r1", "2026-01-01T10:00:00+02:00"),
        commit("h1", "r1", "2026-01-01T11:00:00+00:00"),  # the first observation stays
        commit("h1", "r2", "2025-12-01T10:00:00+00:00"),  # another repository's
        triggered("d1", "web", "h1"),
        done("d1", "web", "h1", "FAILURE"),
        triggered("d2", "web", "h2", "2026-01-02T10:00:00Z"),
        done("d2", "web", "h2", "FAILURE"),  # the streak began with d1
        done("d2", "web", "h2", "SUCCESS"),  # only the first completion counts
        triggered("d3", "web", "h3"),
        done("d3", "web", "h3", "SUCCESS"),  # recovers: h3's time is unknown yet
        commit("h3", "r1", "2026-01-03T10:00:00Z"),
        done("d4", "api", "h1", "SUCCESS"),  # no trigger: any repository's h1
        triggered("d5", "api", "h5", "2999-01-01T00:00:00Z"),  # a clock far ahead
        done("d5", "api", "h5", "SUCCESS"),
        triggered("d6", "api", "h3"),
        done("d6", "api", "h3", "CANCELLED"),
        triggered("d7", "api", "h3"),
        done("d7", "api", "h3", "FAILURE"),
    ]


async def insight_rows(conn: asyncpg.Connection, tables: dict[str, str]) -> dict[str, Any]:
    return {
        logical: sorted(tuple(r) for r in await conn.fetch(f'SELECT * FROM "{physical}"'))
        for logical, physical in tables.items()
    }


async def test_the_insights_projection_writes_a_batch_in_a_few_statements(
    projector_store: EventStore, store: EventStore
) -> None:
    """However many deployments a batch has, it is read in three statements and written in at
    most five, and gives the rows the events give applied one at a time."""
    for stream, event in outcomes():
        await store.append(stream, new_events([event]), expected_version=ANY)
    history = await projector_store.read_all(limit=1_000)
    batched = InsightsProjection()
    statements: list[str] = []
    async with projector_store.pool.acquire() as conn:
        tables = dict((await install(conn, batched)).physical_tables())

        def logged(record: LoggedQuery) -> None:
            statements.append(record.query)

        conn.add_query_logger(logged)
        async with conn.transaction():
            await batched.apply_batch(conn, history, tables)
        conn.remove_query_logger(logged)
        got = await insight_rows(conn, tables)
        async with conn.transaction():
            for table in tables.values():
                await conn.execute(f'TRUNCATE "{table}"')
            for recorded in history:
                await batched.apply(conn, recorded, tables)
            assert got == await insight_rows(conn, tables)
    statements = [s for s in statements if any(t in s for t in tables.values())]
    assert len(statements) <= 8, statements
    completed = {
        e.event.deployment_id: e.recorded_at
        for e in history
        if isinstance(e.event, DeploymentCompleted)
    }
    deployments = {r[0]: r for r in got[DEPLOYMENTS]}
    # (id, application, repository, commit, committed_at, triggered_at, status, completed_at, lead)
    assert deployments["d1"][4] == datetime(2026, 1, 1, 8, tzinfo=UTC)
    assert deployments["d2"][6] == "FAILURE" and deployments["d2"][8] is None
    assert deployments["d3"][4] is None and deployments["d3"][8] is None
    assert deployments["d4"][4] == datetime(2025, 12, 1, 10, tzinfo=UTC)
    assert (
        deployments["d4"][8]
        == (completed["d4"] - datetime(2025, 12, 1, 10, tzinfo=UTC)).total_seconds()
    )
    assert deployments["d5"][6] == "SUCCESS" and deployments["d5"][8] is None
    assert [r[0] for r in got[COMMITS]] == ["h1", "h1", "h3"]
    assert [(r[0], r[1]) for r in got[FAILING]] == [("api", "d7")]
    assert [(r[0], r[1], r[2]) for r in got[RECOVERIES]] == [("d3", "web", "d1")]


async def test_a_page_of_applications_is_read_by_the_name_index(
    projector_store: EventStore,
) -> None:
    """The API lists applications by name, a page at a time: with 10,000 of them a page is
    a range of the name index, never a sort of every row (issue 16: lists ≤ 100 ms)."""
    async with projector_store.pool.acquire() as conn:
        state = await install(conn, ApplicationsProjection())
        table = state.physical_tables()["applications"]
        await conn.execute(
            f'INSERT INTO "{table}" (application_id, name, repository_id, path, config_filename, '
            "platform_provider, labels, registered_labels, disabled, registered_at, updated_at, "
            "last_position) "
            "SELECT 'a' || n, 'app-' || n, 'r' || n % 200, 'p', 'app.pipecd.yaml', '', '{}', "
            "'{}', false, now(), now(), n FROM generate_series(1, 10000) AS n"
        )
        await conn.execute(f'ANALYZE "{table}"')
        for after in (None, "app-5000"):
            rows = await conn.fetch(
                "EXPLAIN " + reads.LIST_APPLICATIONS, None, None, None, None, after, 101, None
            )
            plan = "\n".join(row[0] for row in rows)
            assert "Sort" not in plan, plan
            assert "Index Scan" in plan, plan


async def test_a_run_of_registrations_and_configs_goes_in_one_statement_each(
    projector_store: EventStore, store: EventStore
) -> None:
    """A repository's registrations (and then its configs observed) are folded with one
    pipelined statement per run of one kind, in log order: with 10,000 applications one
    round trip each was a replay's largest cost after the deployment events'."""
    names = ["a", "b", "c"]
    for name in names:
        await store.append(
            f"application-{name}",
            new_events(
                [
                    ApplicationRegistered(
                        application_id=name,
                        name=name,
                        repository_id="r",
                        path=name,
                        labels=(("env", "dev"), ("team", "x")),
                    )
                ]
            ),
            expected_version=NO_STREAM,
        )
    for name in names:
        await store.append(
            f"appconfig-{name}",
            new_events(
                [
                    ApplicationConfigObserved(
                        repository_id="r",
                        application_id=name,
                        commit_hash="c1",
                        labels=(("team", f"t-{name}"),),
                        description=f"about {name}",
                    )
                ]
            ),
            expected_version=NO_STREAM,
        )
    # Order across kinds still counts: b deleted after its config, a registered again with
    # new labels after its config (whose label still wins on `team`).
    await store.append(
        "application-b", new_events([ApplicationDeleted(application_id="b")]), expected_version=ANY
    )
    await store.append(
        "application-a",
        new_events(
            [
                ApplicationRegistered(
                    application_id="a",
                    name="a",
                    repository_id="r",
                    path="a2",
                    labels=(("env", "prd"), ("team", "y")),
                )
            ]
        ),
        expected_version=ANY,
    )
    projection = ApplicationsProjection()
    events = await projector_store.read_all(START)
    statements: list[str] = []
    async with projector_store.pool.acquire() as conn:
        tables = (await install(conn, projection)).physical_tables()

        def logged(record: LoggedQuery) -> None:
            statements.append(record.query)

        conn.add_query_logger(logged)
        async with conn.transaction():
            await projection.apply_batch(conn, events, tables)
        conn.remove_query_logger(logged)
        table = tables["applications"]
        rows = await conn.fetch(
            f'SELECT application_id, path, labels::text, description FROM "{table}" '
            "ORDER BY application_id"
        )
    statements = [s for s in statements if s not in ("BEGIN;", "COMMIT;")]
    # registrations, configs, the deletion, the registration again
    assert len(statements) == 4, statements
    assert [tuple(r) for r in rows] == [
        ("a", "a2", '{"env": "prd", "team": "t-a"}', "about a"),
        ("c", "c", '{"env": "dev", "team": "t-c"}', "about c"),
    ]
