"""The event store: append with optimistic concurrency, read a stream, read everything.

`EventStore` is the one class callers use. Its reads are `EventReader`'s (reading.py), its
appends run the functions of appending.py, and the SQL of both is in statements.py.

Commit order and gaps
---------------------
Identity values are handed out at INSERT, but rows become visible at COMMIT,
so a reader that tails by `global_position` alone can pass position 41 while
40 is still uncommitted, and never see 40. We instead read in
`(tx_id, global_position)` order and only rows whose transaction id is below
`pg_snapshot_xmin(pg_current_snapshot())`: every transaction below that
horizon has finished, and every transaction that starts later gets a larger
id, so nothing can ever appear behind a reader's checkpoint. The price is
latency: a reader waits for the oldest open writing transaction to end.

Per-stream order in that feed is kept by refusing an append whose
transaction id is older than that of the stream's current head (a
transaction that wrote something else first, then appended after a newer
writer); the caller retries in a fresh transaction, as after any conflict.

Group commit
------------
Appends without a caller's connection go through `GroupCommit`
(groupcommit.py): one that finds nothing in flight runs at once, the appends
that arrive meanwhile go together in one statement and one transaction
(`APPEND_GROUP`; `APPEND_BOUNDED` for a group of one), each with its own
version check. An append the group
cannot settle (its check failed, an event id collided, a lock would have to
be waited for) is run again alone by the single-append code, which gives the
exact outcome: the stored positions of a retry, or the precise error. A batch
(`BATCH_EVENTS` or more) shares its commit among its own events: it goes at
once in a transaction of its own, beside the groups, after any earlier write
to its stream.

`append_together` is that group statement inside the caller's transaction (a
consumer appending what a batch of events decided), in a savepoint, all or
none: when one of its appends would not land, the caller appends each alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import asyncpg

from shared.db import CONNECTION_ERRORS
from shared.eventlog.appending import (
    BATCH_EVENTS,
    DEFAULT_MAX_EVENT_BYTES,
    AppendResult,
    EncodedAppend,
    append_alone,
    append_group,
    append_group_in_transaction,
    append_on,
    connection_lost,
    encode,
    new_events,
)
from shared.eventlog.groupcommit import GroupCommit
from shared.eventlog.position import ANY, NO_STREAM
from shared.eventlog.reading import DEFAULT_PAGE_SIZE, EventReader, LogWindow, R, position_of
from shared.eventlog.statements import ROW_COLUMNS, Connection
from shared.events.base import NewEvent
from shared.events.codec import EventRegistry
from shared.streams import check_stream_id

__all__ = [  # what callers import from here, wherever it is defined
    "ANY",
    "BATCH_EVENTS",
    "DEFAULT_MAX_EVENT_BYTES",
    "DEFAULT_PAGE_SIZE",
    "NO_STREAM",
    "ROW_COLUMNS",
    "AppendResult",
    "Connection",
    "EventStore",
    "LogWindow",
    "R",
    "new_events",
    "position_of",
]


class EventStore(EventReader):
    """Appends to and reads from the `events` table of the pool's schema."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: EventRegistry,
        *,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        super().__init__(pool, registry)
        self.max_event_bytes = max_event_bytes
        self.group_commit: GroupCommit[EncodedAppend, AppendResult] = GroupCommit(
            partial(append_alone, pool, registry), partial(append_group, pool)
        )

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None,
        conn: Connection | None = None,
    ) -> AppendResult:
        """Append `events` to `stream_id` in one statement.

        `expected_version` is the stream's current last version (`NO_STREAM`
        for a new stream, `ANY` for no check). Raises `ConcurrencyConflict` when
        the stream has moved on, `IdempotencyViolation` when an event id is
        already stored for something else, `EventTooLarge` (before anything is
        written) when an encoded event is over `max_event_bytes`; retrying the
        same append after a lost connection returns the stored positions.

        Pass `conn` to append inside the caller's transaction. Without it, the
        append commits on its own, possibly in one transaction with other
        appends of this store that arrived while one was in flight (group
        commit); its outcome is the same as if it had gone alone.
        """
        check_stream_id(stream_id)
        if not events:
            raise ValueError("append needs at least one event")
        if expected_version is not None and expected_version < NO_STREAM:
            raise ValueError(f"expected_version must be ≥ {NO_STREAM} or ANY")
        request = encode(self.registry, self.max_event_bytes, stream_id, events, expected_version)
        if conn is None:
            return await self.group_commit.submit(
                stream_id, request, request.size, heavy=len(events) >= BATCH_EVENTS
            )
        try:
            return await append_on(conn, self.registry, request)
        except CONNECTION_ERRORS as exc:
            raise connection_lost(stream_id, exc) from exc

    async def append_together(
        self,
        appends: Sequence[tuple[str, Sequence[NewEvent], int | None]],
        *,
        conn: Connection,
    ) -> list[AppendResult] | None:
        """Several appends, each to its own stream, inside the caller's transaction (`conn`
        must be in one) in one statement: all of them or none.

        Each is checked as `append` checks it (`expected_version`, the per-stream order).
        The results in order, or None when any of them would not land as asked — its
        version check failed, an event id is stored already, another writer holds one of
        its rows, two name one stream — and then nothing of them is written (a savepoint),
        so the caller appends each on its own with `append`, which gives its exact outcome.
        """
        if not appends:
            return []
        if not conn.is_in_transaction():
            raise ValueError("append_together runs in the caller's transaction")
        requests = []
        for stream_id, events, expected_version in appends:
            check_stream_id(stream_id)
            if not events:
                raise ValueError("append needs at least one event")
            if expected_version is not None and expected_version < NO_STREAM:
                raise ValueError(f"expected_version must be ≥ {NO_STREAM} or ANY")
            requests.append(
                encode(self.registry, self.max_event_bytes, stream_id, events, expected_version)
            )
        return await append_group_in_transaction(conn, requests)
