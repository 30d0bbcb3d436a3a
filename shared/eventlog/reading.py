"""Reading the event log: a stream, several streams, the whole log in commit-safe order
(store.py's docstring says why that order never skips a late commit), windows of it below
a horizon, events by id, and decoding stored rows.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from typing import Generic, TypeVar

import asyncpg
import msgspec

from shared.aio import sleep_or_stop
from shared.db import CONNECTION_ERRORS
from shared.errors import Unavailable
from shared.eventlog.position import NO_STREAM, START, LogPosition
from shared.eventlog.statements import (
    BY_IDS,
    ENVELOPE_COLUMNS,
    FULL_WINDOW_END,
    LAST_OF_STREAMS,
    READ_ALL,
    READ_ALL_ENVELOPES,
    READ_STREAM,
    READ_STREAMS_FROM,
    ROW_COLUMNS,
    STREAM_VERSION,
    WINDOW_END,
    WINDOW_SQL,
    Connection,
)
from shared.events.base import Metadata, RecordedEnvelope, RecordedEvent
from shared.events.codec import EventRegistry

DEFAULT_PAGE_SIZE = 500
"""Events per read of `EventStore.iter_stream` (at most 500 × the event cap in memory)."""

_metadata_decoder = msgspec.json.Decoder(Metadata)


R = TypeVar("R", bound=RecordedEnvelope)


class LogWindow(msgspec.Struct, Generic[R], frozen=True):
    """A stretch of the log as `EventStore.read_window` (or `read_envelope_window`) read it."""

    events: list[R]
    """The events of the wanted types, in commit-safe order."""
    end: LogPosition
    """The window's last position, whatever its type: where the next window starts."""
    scanned: int
    """How many events of the log the window spans (wanted or not)."""


class EventReader:
    """Reads the `events` table of the pool's schema (`EventStore` appends to it as well)."""

    def __init__(self, pool: asyncpg.Pool, registry: EventRegistry) -> None:
        self.pool = pool
        self.registry = registry

    async def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int = 0,
        up_to_position: int | None = None,
        up_to_time: datetime | None = None,
        limit: int | None = None,
        conn: Connection | None = None,
    ) -> list[RecordedEvent]:
        """A stream's events in version order, optionally only those up to a position or time,
        and at most `limit` of them (a page: None reads to the end)."""
        args = (stream_id, from_version, up_to_position, up_to_time, limit)
        try:
            if conn is not None:
                rows = await conn.fetch(READ_STREAM, *args)
            else:
                rows = await self.pool.fetch(READ_STREAM, *args)
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"read {stream_id!r}: database connection lost: {exc}") from exc
        return [self.decode_row(r) for r in rows]

    async def iter_stream(
        self,
        stream_id: str,
        *,
        from_version: int = 0,
        up_to_position: int | None = None,
        up_to_time: datetime | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        conn: Connection | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        """A stream's events in version order, read a page of `page_size` at a time: a long
        stream (a repository's commits, an application's drift checks) is never held whole.

        Each page is its own read: without `conn` (a transaction's snapshot) events appended
        meanwhile are read too, in order — what a fold of "the stream as it is now" wants."""
        if page_size < 1:
            raise ValueError(f"page_size must be ≥ 1, not {page_size}")
        version = from_version
        while True:
            page = await self.read_stream(
                stream_id,
                from_version=version,
                up_to_position=up_to_position,
                up_to_time=up_to_time,
                limit=page_size,
                conn=conn,
            )
            for recorded in page:
                yield recorded
            if len(page) < page_size:
                return
            version = page[-1].stream_version + 1

    async def last_of_streams(self, stream_ids: Sequence[str]) -> dict[str, RecordedEvent]:
        """The newest event of each of `stream_ids` that has one, in one round trip (a check
        of many short streams' states, where reading each would be a round trip apiece)."""
        try:
            rows = await self.pool.fetch(LAST_OF_STREAMS, list(stream_ids))
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"read the log: database connection lost: {exc}") from exc
        return {row["stream_id"]: self.decode_row(row) for row in rows}

    async def read_streams_from(
        self, starts: Mapping[str, int], *, limit: int
    ) -> dict[str, list[RecordedEvent]]:
        """Each stream's events from its version in `starts` on, oldest first, at most `limit`
        of each, in one round trip (a stream with none maps to an empty list)."""
        if limit < 1:
            raise ValueError(f"limit must be ≥ 1, not {limit}")
        try:
            rows = await self.pool.fetch(
                READ_STREAMS_FROM, list(starts), list(starts.values()), limit
            )
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"read the log: database connection lost: {exc}") from exc
        read: dict[str, list[RecordedEvent]] = {stream_id: [] for stream_id in starts}
        for row in rows:
            read[row["stream_id"]].append(self.decode_row(row))
        return read

    async def stream_version(self, stream_id: str) -> int:
        """The stream's last version, or `NO_STREAM`."""
        version = await self.pool.fetchval(STREAM_VERSION, stream_id)
        return NO_STREAM if version is None else int(version)

    async def read_all(
        self, after: LogPosition = START, *, limit: int = 1000, conn: Connection | None = None
    ) -> list[RecordedEvent]:
        """Committed events after `after`, in commit-safe order, at most `limit`."""
        return [self.decode_row(r) for r in await self.read_all_rows(after, limit=limit, conn=conn)]

    async def read_all_envelopes(
        self, after: LogPosition = START, *, limit: int = 1000, conn: Connection | None = None
    ) -> list[RecordedEnvelope]:
        """`read_all`'s events as envelopes alone: no payload or metadata is read or decoded."""
        args = (after.tx_id, after.global_position, limit)
        try:
            rows = await (conn or self.pool).fetch(READ_ALL_ENVELOPES, *args)
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"read the log: database connection lost: {exc}") from exc
        return [decode_envelope(r) for r in rows]

    async def read_all_rows(
        self, after: LogPosition = START, *, limit: int = 1000, conn: Connection | None = None
    ) -> list[asyncpg.Record]:
        """`read_all` without decoding: for the relay, which forwards payloads as stored."""
        args = (after.tx_id, after.global_position, limit)
        try:
            if conn is not None:
                return list(await conn.fetch(READ_ALL, *args))
            return list(await self.pool.fetch(READ_ALL, *args))
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"read the log: database connection lost: {exc}") from exc

    async def read_window(
        self,
        after: LogPosition,
        *,
        below_tx_id: int,
        limit: int,
        event_types: Sequence[str] | None = None,
        conn: Connection | None = None,
    ) -> LogWindow[RecordedEvent] | None:
        """The next `limit` events after `after` whose transaction ids are below `below_tx_id`
        (a horizon the caller read once), keeping those of `event_types` (None: all); None
        once nothing is left below the horizon."""
        return await self._window(
            ROW_COLUMNS, self.decode_row, after, below_tx_id, limit, event_types, conn
        )

    async def read_envelope_window(
        self,
        after: LogPosition,
        *,
        below_tx_id: int,
        limit: int,
        event_types: Sequence[str] | None = None,
        conn: Connection | None = None,
    ) -> LogWindow[RecordedEnvelope] | None:
        """`read_window` with envelopes alone: no payload or metadata is read or decoded."""
        return await self._window(
            ENVELOPE_COLUMNS, decode_envelope, after, below_tx_id, limit, event_types, conn
        )

    async def window_end(
        self,
        after: LogPosition,
        *,
        below_tx_id: int,
        limit: int,
        conn: Connection | None = None,
    ) -> tuple[LogPosition, int] | None:
        """Where the window of `read_window` ends and how many events it spans, read from the
        commit-order index alone; None once nothing is left below the horizon."""
        args = (after.tx_id, after.global_position, below_tx_id, limit)
        db = conn or self.pool
        try:
            if (full := await db.fetchrow(FULL_WINDOW_END, *args)) is not None:
                return position_of(full), limit
            last = await db.fetchrow(WINDOW_END, *args)
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"read the log: database connection lost: {exc}") from exc
        return None if last is None else (position_of(last), last["scanned"])

    async def _window(
        self,
        columns: str,
        decode: Callable[[asyncpg.Record], R],
        after: LogPosition,
        below_tx_id: int,
        limit: int,
        event_types: Sequence[str] | None,
        conn: Connection | None,
    ) -> LogWindow[R] | None:
        db = conn or self.pool
        read_below, read_types = WINDOW_SQL[columns]
        args = (after.tx_id, after.global_position, below_tx_id, limit)
        try:
            if event_types is None:
                rows = await db.fetch(read_below, *args)
                if not rows:
                    return None
                end, scanned = position_of(rows[-1]), len(rows)
            else:
                window = await self.window_end(after, below_tx_id=below_tx_id, limit=limit, conn=db)
                if window is None:
                    return None
                end, scanned = window
                # The same window: the rows below a horizon never change.
                rows = await db.fetch(read_types, *args, list(event_types))
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"read the log: database connection lost: {exc}") from exc
        return LogWindow([decode(r) for r in rows], end, scanned)

    async def rows_by_id(
        self, event_ids: Sequence[uuid.UUID], *, conn: Connection | None = None
    ) -> dict[uuid.UUID, asyncpg.Record]:
        """The stored rows of those of `event_ids` that are in the log (`decode_row` decodes)."""
        try:
            rows = await (conn or self.pool).fetch(BY_IDS, list(event_ids))
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"read the log: database connection lost: {exc}") from exc
        return {row["event_id"]: row for row in rows}

    async def tail(
        self,
        after: LogPosition = START,
        *,
        batch_size: int = 1000,
        idle_sleep: float = 0.01,
        stop: asyncio.Event | None = None,
    ) -> AsyncIterator[list[RecordedEvent]]:
        """Batches of committed events, forever (or until `stop` is set), polling when idle."""
        position = after
        while stop is None or not stop.is_set():
            batch = await self.read_all(position, limit=batch_size)
            if batch:
                position = position_of(batch[-1])
                yield batch
            elif stop is None:
                await asyncio.sleep(idle_sleep)
            else:
                await sleep_or_stop(stop, idle_sleep)

    def decode_row(self, row: asyncpg.Record) -> RecordedEvent:
        """A stored row as a `RecordedEvent`, upcast to its current schema version."""
        return RecordedEvent(
            global_position=row["global_position"],
            tx_id=row["tx_id"],
            stream_id=row["stream_id"],
            stream_version=row["stream_version"],
            event_id=row["event_id"],
            event_type=row["event_type"],
            schema_version=row["schema_version"],
            event=self.registry.decode(row["event_type"], row["schema_version"], row["payload"]),
            metadata=_metadata_decoder.decode(row["metadata"]),
            recorded_at=row["recorded_at"],
        )


def decode_envelope(row: asyncpg.Record) -> RecordedEnvelope:
    """A stored row's envelope, whether or not the row holds the payload and metadata."""
    return RecordedEnvelope(
        global_position=row["global_position"],
        tx_id=row["tx_id"],
        stream_id=row["stream_id"],
        stream_version=row["stream_version"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        schema_version=row["schema_version"],
        recorded_at=row["recorded_at"],
    )


def position_of(event: RecordedEnvelope | asyncpg.Record) -> LogPosition:
    """Where an event (or an events row) stands in the global feed."""
    if isinstance(event, RecordedEnvelope):
        return LogPosition(event.tx_id, event.global_position)
    return LogPosition(event["tx_id"], event["global_position"])
