"""Event histories written at chosen times: the log as it would read after weeks of use.

`recorded_at` is the database's clock at the append, and the log refuses to
change it (append-only, even for its owner). A test that needs figures it can
compute by hand (lead times, recovery times) appends its events, then moves
their `recorded_at` as the superuser with triggers off for that session
(`session_replication_role = replica`) — before any projection reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from shared.eventlog import EventStore, new_events
from shared.events.base import Event


async def write_history(
    store: EventStore,
    superuser_url: str,
    schema: str,
    history: Sequence[tuple[str, Event, datetime]],
) -> None:
    """Append each `(stream, event, at)` in order, then record it as appended `at`."""
    moved: list[tuple[int, datetime]] = []
    for stream, event, at in history:
        result = await store.append(stream, new_events([event]), expected_version=None)
        moved.append((result.global_positions[0], at))
    conn = await asyncpg.connect(superuser_url)
    try:
        await conn.execute(f'SET search_path TO "{schema}"')
        await conn.execute("SET session_replication_role = replica")
        await conn.executemany(
            "UPDATE events SET recorded_at = $2 WHERE global_position = $1", moved
        )
    finally:
        await conn.close()
