"""The relay and consumer tests' probe of exactly-once: a `handled_counts` table and its handler."""

from __future__ import annotations

from typing import Any

import asyncpg
from nats.js import JetStreamContext

from shared.consumer import EventConsumer, Handler
from shared.eventlog import EventStore
from shared.events import RecordedEvent
from shared.subjects import Subjects


async def create_counts_table(database_url: str, schema: str) -> None:
    """`handled_counts` in `schema`, writable by the application role (made as the owner)."""
    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:
        await conn.execute(
            "CREATE TABLE handled_counts (event_id uuid PRIMARY KEY, n int NOT NULL)"
        )
        await conn.execute("GRANT SELECT, INSERT, UPDATE ON handled_counts TO slipway_app")
    finally:
        await conn.close()


async def counting_handler(event: RecordedEvent, conn: asyncpg.Connection) -> None:
    """Not idempotent on purpose: only the runtime's inbox keeps it exactly-once."""
    await conn.execute(
        "INSERT INTO handled_counts (event_id, n) VALUES ($1, 1) "
        "ON CONFLICT (event_id) DO UPDATE SET n = handled_counts.n + 1",
        event.event_id,
    )


def consumer_of(
    js: JetStreamContext,
    store: EventStore,
    subjects: Subjects,
    handler: Handler,
    *,
    name: str,
    **kw: Any,
) -> EventConsumer:
    """A consumer of every event of this test's store and subjects, fetching briskly."""
    return EventConsumer(
        name=name,
        js=js,
        pool=store.pool,
        registry=store.registry,
        subjects=subjects,
        handler=handler,
        fetch_timeout_s=0.2,
        **kw,
    )


def counting_consumer(
    js: JetStreamContext,
    store: EventStore,
    subjects: Subjects,
    *,
    name: str = "counter",
    ack_wait_s: float = 1.0,
    **kw: Any,
) -> EventConsumer:
    """A consumer of every event that counts each handling in `handled_counts`."""
    return consumer_of(
        js, store, subjects, counting_handler, name=name, ack_wait_s=ack_wait_s, **kw
    )
