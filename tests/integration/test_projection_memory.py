"""A replay of `applications` remembers the sync states it wrote (`shared.projections.memory`)
instead of reading them back each window: what it remembers must be what the table holds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from asyncpg.connection import LoggedQuery

from shared.eventlog import ANY, EventStore, new_events
from shared.eventlog.position import START
from shared.events import vocabulary
from shared.events.base import Event
from shared.events.catalog import (
    ApplicationDeleted,
    ApplicationRegistered,
    DeploymentCompleted,
    DeploymentTriggered,
)
from shared.projections import replay
from shared.projections.applications import ApplicationsProjection
from shared.projections.state import install

AT = datetime(2026, 1, 1, tzinfo=UTC)


def registered() -> ApplicationRegistered:
    return ApplicationRegistered(application_id="web", name="web", repository_id="r", path="web")


def triggered(d: str) -> DeploymentTriggered:
    return DeploymentTriggered(
        deployment_id=d,
        application_id="web",
        trigger=vocabulary.Trigger.ON_COMMIT,
        commit_hash=f"c-{d}",
    )


def completed(d: str) -> DeploymentCompleted:
    return DeploymentCompleted(
        deployment_id=d,
        application_id="web",
        status=vocabulary.DeploymentStatus("SUCCESS"),
        commit_hash=f"c-{d}",
    )


async def append(store: EventStore, *events: Event) -> None:
    for event in events:
        if isinstance(event, ApplicationRegistered | ApplicationDeleted):
            stream = "application-web"
        else:
            stream = f"deployment-{getattr(event, 'deployment_id')}"  # noqa: B009
        await store.append(stream, new_events([event]), expected_version=ANY)


async def sync_of(conn: asyncpg.Connection, table: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(f'SELECT sync_state, sync FROM "{table}"')]


async def test_a_window_rolled_back_is_forgotten(
    store: EventStore, projector_store: EventStore
) -> None:
    await append(store, registered(), triggered("d1"), completed("d1"), triggered("d2"))
    register, trigger1, complete1, trigger2 = await projector_store.read_all(START)
    remembering = ApplicationsProjection()
    expected = ApplicationsProjection("applications_expected")
    statements: list[str] = []
    async with projector_store.pool.acquire() as conn:
        tables = (await install(conn, remembering)).physical_tables()
        memory = remembering.remember_writes(tables)
        async with conn.transaction():
            await remembering.apply_batch(conn, [register, trigger1], tables)
        memory.commit()
        try:
            async with conn.transaction():
                await remembering.apply_batch(conn, [complete1], tables)
                raise RuntimeError("the window's transaction fails after its write")
        except RuntimeError:
            memory.rollback()

        def logged(record: LoggedQuery) -> None:
            statements.append(record.query)

        conn.add_query_logger(logged)
        async with conn.transaction():
            await remembering.apply_batch(conn, [trigger2], tables)
        conn.remove_query_logger(logged)
        memory.commit()
        memory.close()
        # What the table holds: d1 never completed, d2 triggered.
        expected_tables = (await install(conn, expected)).physical_tables()
        async with conn.transaction():
            await expected.apply_batch(conn, [register, trigger1, trigger2], expected_tables)
        got = await sync_of(conn, tables["applications"])
        want = await sync_of(conn, expected_tables["applications_expected"])
    statements = [s for s in statements if s not in ("BEGIN;", "COMMIT;")]
    assert len(statements) == 1, statements  # remembered: written, not read back
    assert got == want
    assert '"active": ["d1", "d2"]' in want[0]["sync"]


async def test_a_replay_reads_again_an_application_deleted_and_registered_again(
    store: EventStore, projector_store: EventStore
) -> None:
    """The re-registered row starts with an empty sync state, whatever the memory held."""
    await append(store, registered(), triggered("d1"), completed("d1"))
    await append(store, ApplicationDeleted(application_id="web"), registered(), triggered("d2"))
    live = ApplicationsProjection("applications_live")
    async with projector_store.pool.acquire() as conn:
        live_tables = (await install(conn, live)).physical_tables()
        async with conn.transaction():
            await live.apply_batch(conn, await projector_store.read_all(START), live_tables)
        want = await sync_of(conn, live_tables["applications_live"])
    replayed = ApplicationsProjection()
    await replay(projector_store, replayed, batch_size=1)
    async with projector_store.pool.acquire() as conn:
        got = await sync_of(conn, "applications")
    assert got == want
    assert '"last_deployment"' in want[0]["sync"] and "c-d1" not in want[0]["sync"]
    assert replayed._memories == {}  # closed with the replay: the live table is not remembered
