"""The event store: append with optimistic concurrency, read a stream, read everything.

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
(`_APPEND_GROUP`; `_APPEND_BOUNDED` for a group of one), each with its own
version check. An append the group
cannot settle (its check failed, an event id collided, a lock would have to
be waited for) is run again alone by the single-append code, which gives the
exact outcome: the stored positions of a retry, or the precise error.

`append_together` is that group statement inside the caller's transaction (a
consumer appending what a batch of events decided), in a savepoint, all or
none: when one of its appends would not land, the caller appends each alone.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Generic, TypeAlias, TypeVar

import asyncpg
import msgspec

from shared.aio import sleep_or_stop
from shared.db import CONNECTION_ERRORS
from shared.errors import ConcurrencyConflict, EventTooLarge, IdempotencyViolation, Unavailable
from shared.eventlog.groupcommit import ALONE, Alone, GroupCommit
from shared.eventlog.position import START, LogPosition
from shared.events.base import Event, Metadata, NewEvent, RecordedEnvelope, RecordedEvent
from shared.events.codec import EventRegistry
from shared.streams import check_stream_id

ANY: None = None
"""`expected_version=ANY`: append at the end, whatever the stream's version."""
NO_STREAM = -1
"""`expected_version=NO_STREAM`: the stream must not exist yet."""
DEFAULT_MAX_EVENT_BYTES = 512 * 1024
"""Cap on an event's encoded payload plus metadata. The relay publishes both (metadata as
headers) in one NATS message, and NATS refuses messages over its `max_payload` (1 MiB by
default); half of that leaves room for the other headers and a server configured lower."""

DEFAULT_PAGE_SIZE = 500
"""Events per read of `EventStore.iter_stream` (at most 500 × the event cap in memory)."""

_APPEND = """
WITH last AS (
  SELECT stream_version, tx_id FROM events
  WHERE stream_id = $1 ORDER BY stream_version DESC LIMIT 1
), head AS (
  SELECT coalesce((SELECT stream_version FROM last), -1) AS version,
         (SELECT tx_id FROM last) AS tx_id
)
INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version,
                    payload, metadata)
SELECT $1, head.version + e.ord, e.event_id, e.event_type, e.schema_version,
       e.payload, e.metadata
FROM head,
     unnest($3::uuid[], $4::text[], $5::int2[], $6::bytea[], $7::jsonb[])
       WITH ORDINALITY AS e(event_id, event_type, schema_version, payload, metadata, ord)
WHERE ($2::bigint IS NULL OR head.version = $2::bigint)
  AND (head.tx_id IS NULL OR head.tx_id <= pg_current_xact_id())
RETURNING global_position, stream_version
"""

BATCH_EVENTS: Final = 16
"""An append of this many events or more is a batch: its own events already share its
commit's cost, so it goes at once in a transaction of its own instead of waiting to join
the next group (`GroupCommit.submit(heavy=True)`). Two writers of 100-event appends ran in
turns before it, one group at a time; now they run beside each other (`append_batch` in
benchmarks.eventlog)."""

GROUP_LOCK_TIMEOUT = "50ms"
"""How long a group's statement may wait for a lock: an uncommitted append of another
transaction to one of its streams. Past it the group is rolled back and each of its appends
runs alone, so that one stream held by a long transaction never stalls the other appends."""

# `_APPEND` for several streams at once: $1/$2 one element per append (stream, expected
# version), $3.. one element per event (its append's number, its place in that append).
_APPEND_GROUP_OF = """
WITH {settings}appended AS (
  SELECT a.n, a.stream_id, coalesce(last.stream_version, -1) AS version
  FROM {settings_from}unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS a(stream_id, expected, n)
       LEFT JOIN LATERAL (
         SELECT stream_version, tx_id FROM events
         WHERE events.stream_id = a.stream_id ORDER BY stream_version DESC LIMIT 1
       ) AS last ON true
  WHERE (a.expected IS NULL OR coalesce(last.stream_version, -1) = a.expected)
    AND (last.tx_id IS NULL OR last.tx_id <= pg_current_xact_id())
)
INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version,
                    payload, metadata)
SELECT appended.stream_id, appended.version + e.ord, e.event_id, e.event_type,
       e.schema_version, e.payload, e.metadata
FROM unnest($3::bigint[], $4::bigint[], $5::uuid[], $6::text[], $7::int2[], $8::bytea[],
            $9::jsonb[]) AS e(n, ord, event_id, event_type, schema_version, payload, metadata)
JOIN appended ON appended.n = e.n
ORDER BY e.n, e.ord
RETURNING global_position, stream_id, stream_version
"""
# Group commit's: `settings` is read before any row is produced, so the lock timeout ($10)
# is set before the first insert can wait; `set_config(…, true)` lasts for this statement's
# transaction only.
_APPEND_GROUP = _APPEND_GROUP_OF.format(
    settings="settings AS MATERIALIZED (\n"
    "  SELECT set_config('lock_timeout', $10::text, true)\n), ",
    settings_from="settings, ",
)
# `append_together`'s, in the caller's transaction: no lock timeout of its own (it would
# last for the rest of the caller's transaction), as `_APPEND` there.
_APPEND_GROUP_IN_TRANSACTION = _APPEND_GROUP_OF.format(settings="", settings_from="")

# `_APPEND` with `_APPEND_GROUP`'s lock timeout ($8), for a group of one: as cheap as
# `_APPEND` (the group statement's arrays and sort cost a single writer about a millisecond).
_APPEND_BOUNDED = """
WITH settings AS MATERIALIZED (
  SELECT set_config('lock_timeout', $8::text, true)
), last AS (
  SELECT stream_version, tx_id FROM events
  WHERE stream_id = $1 ORDER BY stream_version DESC LIMIT 1
), head AS (
  SELECT coalesce((SELECT stream_version FROM last), -1) AS version,
         (SELECT tx_id FROM last) AS tx_id
  FROM settings
)
INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version,
                    payload, metadata)
SELECT $1, head.version + e.ord, e.event_id, e.event_type, e.schema_version,
       e.payload, e.metadata
FROM head,
     unnest($3::uuid[], $4::text[], $5::int2[], $6::bytea[], $7::jsonb[])
       WITH ORDINALITY AS e(event_id, event_type, schema_version, payload, metadata, ord)
WHERE ($2::bigint IS NULL OR head.version = $2::bigint)
  AND (head.tx_id IS NULL OR head.tx_id <= pg_current_xact_id())
RETURNING global_position, stream_id, stream_version
"""

_HEAD = """
SELECT stream_version, tx_id, pg_current_xact_id_if_assigned() AS own_tx
FROM events WHERE stream_id = $1 ORDER BY stream_version DESC LIMIT 1
"""

_COLUMNS = """global_position, tx_id, stream_id, stream_version, event_id, event_type,
schema_version, payload, metadata, recorded_at"""
ROW_COLUMNS: Final = _COLUMNS
"""The columns of `events` that `EventStore.decode_row` reads, for a query that joins the log."""
# What `RecordedEnvelope` holds: a fold that needs no more is not sent the payloads.
_ENVELOPE_COLUMNS = """global_position, tx_id, stream_id, stream_version, event_id,
event_type, schema_version, recorded_at"""

_READ_STREAM = f"""
SELECT {_COLUMNS} FROM events
WHERE stream_id = $1 AND stream_version >= $2
  AND ($3::bigint IS NULL OR global_position <= $3::bigint)
  AND ($4::timestamptz IS NULL OR recorded_at <= $4::timestamptz)
ORDER BY stream_version
LIMIT $5::bigint
"""

_READ_ALL_OF = """
SELECT {columns} FROM events
WHERE (tx_id, global_position) > ($1::xid8, $2::bigint)
  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY tx_id, global_position
LIMIT $3
"""
_READ_ALL = _READ_ALL_OF.format(columns=_COLUMNS)
_READ_ALL_ENVELOPES = _READ_ALL_OF.format(columns=_ENVELOPE_COLUMNS)

# A rebuild reads the log in windows of a fixed number of events below a horizon it
# read once. Reading only some event types, the window's last position and size come
# from the commit-order index alone (`window_end`), so the checkpoint moves past the
# events a projection ignores without shipping them to the client. (Two queries: one
# that numbered the window's rows to keep its last was ten times slower than both.)
_READ_BELOW_OF = """
SELECT {columns} FROM events
WHERE (tx_id, global_position) > ($1::xid8, $2::bigint) AND tx_id < $3::xid8
ORDER BY tx_id, global_position
LIMIT $4
"""
_READ_TYPES_OF = "SELECT * FROM ({below}) AS w WHERE event_type = ANY($5::text[])"
# (read everything, read some types) for whole events and for envelopes alone.
_WINDOW_SQL = {
    columns: (
        _READ_BELOW_OF.format(columns=columns),
        _READ_TYPES_OF.format(below=_READ_BELOW_OF.format(columns=columns)),
    )
    for columns in (_COLUMNS, _ENVELOPE_COLUMNS)
}
# A full window's last row, found by skipping over the index: a fraction of `_WINDOW_END`'s
# cost, which counts and sorts the window; that one is left for the log's last window.
_FULL_WINDOW_END = """
SELECT tx_id, global_position FROM events
WHERE (tx_id, global_position) > ($1::xid8, $2::bigint) AND tx_id < $3::xid8
ORDER BY tx_id, global_position
OFFSET $4::bigint - 1 LIMIT 1
"""
_WINDOW_END = """
SELECT tx_id, global_position, count(*) OVER () AS scanned FROM (
  SELECT tx_id, global_position FROM events
  WHERE (tx_id, global_position) > ($1::xid8, $2::bigint) AND tx_id < $3::xid8
  ORDER BY tx_id, global_position
  LIMIT $4
) AS w
ORDER BY tx_id DESC, global_position DESC
LIMIT 1
"""

_STORED = """
SELECT event_id, stream_id, stream_version, event_type, payload, global_position
FROM events WHERE event_id = ANY($1::uuid[])
"""

# An index scan of `events_event_id_unique`: one read per consumed batch.
_BY_IDS = f"SELECT {_COLUMNS} FROM events WHERE event_id = ANY($1::uuid[])"

_ANY_STORED = "SELECT EXISTS (SELECT 1 FROM events WHERE event_id = ANY($1::uuid[]))"

# Each stream's newest event: one backward step of `events_stream_version_unique` per stream.
_LAST_OF_STREAMS = f"""
SELECT e.* FROM unnest($1::text[]) AS s(stream_id)
CROSS JOIN LATERAL (
  SELECT {_COLUMNS} FROM events WHERE stream_id = s.stream_id
  ORDER BY stream_version DESC LIMIT 1
) AS e
"""

# The first events of several streams from a version each, at most $3 per stream, in one
# round trip: the tails after the snapshots of a batch of short streams.
_READ_STREAMS_FROM = f"""
SELECT e.* FROM unnest($1::text[], $2::bigint[]) AS s(stream_id, first)
CROSS JOIN LATERAL (
  SELECT {_COLUMNS} FROM events WHERE stream_id = s.stream_id AND stream_version >= s.first
  ORDER BY stream_version LIMIT $3::bigint
) AS e
ORDER BY e.stream_id, e.stream_version
"""

_metadata_encoder = msgspec.json.Encoder()
_metadata_decoder = msgspec.json.Decoder(Metadata)

Connection: TypeAlias = "asyncpg.Connection | asyncpg.pool.PoolConnectionProxy"


R = TypeVar("R", bound=RecordedEnvelope)


class LogWindow(msgspec.Struct, Generic[R], frozen=True):
    """A stretch of the log as `EventStore.read_window` (or `read_envelope_window`) read it."""

    events: list[R]
    """The events of the wanted types, in commit-safe order."""
    end: LogPosition
    """The window's last position, whatever its type: where the next window starts."""
    scanned: int
    """How many events of the log the window spans (wanted or not)."""


class AppendResult(msgspec.Struct, frozen=True):
    """Where an append landed: positions and versions, one per event, in order."""

    global_positions: tuple[int, ...]
    stream_versions: tuple[int, ...]

    @property
    def next_expected_version(self) -> int:
        """The version to expect for the next append after this one."""
        return self.stream_versions[-1]


@dataclass(frozen=True)
class _Append:
    """One `append` call, encoded: what its statement (or its part of a group's) sends."""

    stream_id: str
    events: Sequence[NewEvent]
    expected_version: int | None
    ids: list[uuid.UUID]
    types: list[str]
    schema_versions: list[int]
    payloads: list[bytes]
    metadata: list[str]

    @property
    def args(self) -> tuple[object, ...]:
        """`_APPEND`'s arguments."""
        return (
            self.stream_id,
            self.expected_version,
            self.ids,
            self.types,
            self.schema_versions,
            self.payloads,
            self.metadata,
        )

    @property
    def size(self) -> int:
        return sum(map(len, self.payloads)) + sum(map(len, self.metadata))


class EventStore:
    """Appends to and reads from the `events` table of the pool's schema."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: EventRegistry,
        *,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self.pool = pool
        self.registry = registry
        self.max_event_bytes = max_event_bytes
        self.group_commit: GroupCommit[_Append, AppendResult] = GroupCommit(
            self._append_alone, self._append_group
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
        request = self._encode(stream_id, events, expected_version)
        if conn is None:
            return await self.group_commit.submit(
                stream_id, request, request.size, heavy=len(events) >= BATCH_EVENTS
            )
        try:
            return await self._append_on(conn, request)
        except CONNECTION_ERRORS as exc:
            raise _lost(stream_id, exc) from exc

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
            requests.append(self._encode(stream_id, events, expected_version))
        if len({request.stream_id for request in requests}) < len(requests):
            return None
        savepoint = conn.transaction()
        await savepoint.start()
        try:
            rows = await conn.fetch(_APPEND_GROUP_IN_TRANSACTION, *_group_args(requests))
        except (
            asyncpg.UniqueViolationError,
            asyncpg.DeadlockDetectedError,
            asyncpg.SerializationError,
        ):
            await savepoint.rollback()
            return None
        except CONNECTION_ERRORS as exc:
            raise _lost(requests[0].stream_id, exc) from exc
        landed: dict[str, list[asyncpg.Record]] = defaultdict(list)
        for row in rows:
            landed[row["stream_id"]].append(row)
        if any(len(landed[r.stream_id]) != len(r.events) for r in requests):
            await savepoint.rollback()  # one did not land: none of them stays
            return None
        await savepoint.commit()
        results = []
        for request in requests:
            mine = sorted(landed[request.stream_id], key=lambda r: r["stream_version"])
            results.append(
                AppendResult(
                    tuple(r["global_position"] for r in mine),
                    tuple(r["stream_version"] for r in mine),
                )
            )
        return results

    async def _append_alone(self, request: _Append) -> AppendResult:
        try:
            async with self.pool.acquire() as own:
                return await self._append_on(own, request)
        except CONNECTION_ERRORS as exc:
            raise _lost(request.stream_id, exc) from exc

    async def _append_group(
        self, group: Sequence[_Append]
    ) -> list[AppendResult | BaseException | Alone]:
        """One statement for every append of `group` (one per stream); `ALONE` where it failed."""
        if len(group) == 1:
            statement, args = _APPEND_BOUNDED, group[0].args
        else:
            statement, args = _APPEND_GROUP, _group_args(group)
        try:
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(statement, *args, GROUP_LOCK_TIMEOUT)
        except CONNECTION_ERRORS as exc:
            # One statement, one transaction: all of it committed or none of it, and the
            # callers cannot tell which; a retry returns the stored positions if it did.
            return [_lost(request.stream_id, exc) for request in group]
        except (
            asyncpg.UniqueViolationError,
            asyncpg.DeadlockDetectedError,
            asyncpg.SerializationError,
            asyncpg.LockNotAvailableError,
        ):
            # Rolled back whole: each append again on its own, for its exact outcome.
            return [ALONE] * len(group)
        landed: dict[str, list[asyncpg.Record]] = defaultdict(list)
        for row in rows:
            landed[row["stream_id"]].append(row)
        outcomes: list[AppendResult | BaseException | Alone] = []
        for request in group:
            mine = sorted(landed.get(request.stream_id, ()), key=lambda r: r["stream_version"])
            outcomes.append(
                AppendResult(
                    tuple(r["global_position"] for r in mine),
                    tuple(r["stream_version"] for r in mine),
                )
                if mine
                # Its version check failed: a conflict, or a retry of an append that
                # committed; the single-append code tells which, with the precise error.
                else ALONE
            )
        return outcomes

    async def _append_on(self, conn: Connection, request: _Append) -> AppendResult:
        stream_id, events, expected_version = (
            request.stream_id,
            request.events,
            request.expected_version,
        )
        args = request.args
        # Outside a transaction the INSERT is its own transaction: one round trip.
        # Inside one, a savepoint keeps a unique violation from aborting the caller's work.
        try:
            if conn.is_in_transaction():
                async with conn.transaction():
                    rows = await conn.fetch(_APPEND, *args)
            else:
                rows = await conn.fetch(_APPEND, *args)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "events_event_id_unique":
                return await self._stored_result(conn, stream_id, events)
            raise ConcurrencyConflict(stream_id, _expected_for_error(expected_version)) from exc
        except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:
            # Two transactions appending to the same streams in opposite orders wait on
            # each other's uncommitted versions; the one PostgreSQL aborts retries.
            raise ConcurrencyConflict(stream_id, _expected_for_error(expected_version)) from exc
        if not rows:
            # A retry of an append that did commit fails the version check before it can
            # hit the event-id constraint, so look for the ids before calling it a conflict.
            if await conn.fetchval(_ANY_STORED, [e.event_id for e in events]):
                return await self._stored_result(conn, stream_id, events)
            raise await self._why_not_appended(conn, stream_id, expected_version)
        rows = sorted(rows, key=lambda r: r["stream_version"])
        return AppendResult(
            tuple(r["global_position"] for r in rows), tuple(r["stream_version"] for r in rows)
        )

    def _encode(
        self, stream_id: str, events: Sequence[NewEvent], expected_version: int | None
    ) -> _Append:
        ids: list[uuid.UUID] = []
        types: list[str] = []
        versions: list[int] = []
        payloads: list[bytes] = []
        metadata: list[str] = []
        for new in events:
            event_type, schema_version, payload = self.registry.encode(new.event)
            encoded_metadata = _metadata_encoder.encode(new.metadata)
            size = len(payload) + len(encoded_metadata)
            if size > self.max_event_bytes:
                raise EventTooLarge(event_type, stream_id, size, self.max_event_bytes)
            ids.append(new.event_id)
            types.append(event_type)
            versions.append(schema_version)
            payloads.append(payload)
            metadata.append(encoded_metadata.decode())
        return _Append(
            stream_id, events, expected_version, ids, types, versions, payloads, metadata
        )

    async def _stored_result(
        self, conn: Connection, stream_id: str, events: Sequence[NewEvent]
    ) -> AppendResult:
        """The original positions of a retried append, or why it is not a retry."""
        stored = {r["event_id"]: r for r in await conn.fetch(_STORED, [e.event_id for e in events])}
        for new in events:
            row = stored.get(new.event_id)
            event_type, _, payload = self.registry.encode(new.event)
            if row is None:
                raise IdempotencyViolation(
                    f"append to {stream_id!r} mixes event ids already stored with new ones "
                    f"(event {new.event_id} is new): a retry must resend the same batch"
                )
            if (row["stream_id"], row["event_type"], bytes(row["payload"])) != (
                stream_id,
                event_type,
                payload,
            ):
                raise IdempotencyViolation(
                    f"event id {new.event_id} is already stored as {row['event_type']!r} in "
                    f"stream {row['stream_id']!r} with a different payload; an event id "
                    "must never be reused for another event"
                )
        rows = [stored[e.event_id] for e in events]
        return AppendResult(
            tuple(r["global_position"] for r in rows), tuple(r["stream_version"] for r in rows)
        )

    async def _why_not_appended(
        self, conn: Connection, stream_id: str, expected_version: int | None
    ) -> ConcurrencyConflict:
        head = await conn.fetchrow(_HEAD, stream_id)
        actual = NO_STREAM if head is None else head["stream_version"]
        if expected_version is not None and actual != expected_version:
            return ConcurrencyConflict(stream_id, expected_version, actual)
        conflict = ConcurrencyConflict(stream_id, _expected_for_error(expected_version), actual)
        conflict.args = (
            f"stream {stream_id!r} was last written by a transaction newer than this one; "
            "retry the append in a new transaction",
        )
        return conflict

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
                rows = await conn.fetch(_READ_STREAM, *args)
            else:
                rows = await self.pool.fetch(_READ_STREAM, *args)
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
            rows = await self.pool.fetch(_LAST_OF_STREAMS, list(stream_ids))
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
                _READ_STREAMS_FROM, list(starts), list(starts.values()), limit
            )
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"read the log: database connection lost: {exc}") from exc
        read: dict[str, list[RecordedEvent]] = {stream_id: [] for stream_id in starts}
        for row in rows:
            read[row["stream_id"]].append(self.decode_row(row))
        return read

    async def stream_version(self, stream_id: str) -> int:
        """The stream's last version, or `NO_STREAM`."""
        version = await self.pool.fetchval(
            "SELECT max(stream_version) FROM events WHERE stream_id = $1", stream_id
        )
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
            rows = await (conn or self.pool).fetch(_READ_ALL_ENVELOPES, *args)
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
                return list(await conn.fetch(_READ_ALL, *args))
            return list(await self.pool.fetch(_READ_ALL, *args))
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
            _COLUMNS, self.decode_row, after, below_tx_id, limit, event_types, conn
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
            _ENVELOPE_COLUMNS, decode_envelope, after, below_tx_id, limit, event_types, conn
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
            if (full := await db.fetchrow(_FULL_WINDOW_END, *args)) is not None:
                return position_of(full), limit
            last = await db.fetchrow(_WINDOW_END, *args)
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
        read_below, read_types = _WINDOW_SQL[columns]
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
            rows = await (conn or self.pool).fetch(_BY_IDS, list(event_ids))
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


def new_events(events: Iterable[Event], *, metadata: Metadata | None = None) -> list[NewEvent]:
    """Wrap events with fresh ids and shared metadata, for callers with nothing to dedupe on."""
    from shared.eventlog.envelope import envelope
    from shared.ids import new_event_id

    if metadata is None:
        # The current span's context rides with the event, so whoever handles it
        # later continues this trace (DESIGN §11: one deployment is one trace).
        metadata = envelope()
    return [NewEvent(event=e, event_id=new_event_id(), metadata=metadata) for e in events]


def _group_args(group: Sequence[_Append]) -> tuple[object, ...]:
    """`_APPEND_GROUP`'s arguments but the lock timeout."""
    numbers: list[int] = []
    places: list[int] = []
    for n, request in enumerate(group, start=1):
        numbers += [n] * len(request.ids)
        places += range(1, len(request.ids) + 1)
    return (
        [request.stream_id for request in group],
        [request.expected_version for request in group],
        numbers,
        places,
        [i for request in group for i in request.ids],
        [t for request in group for t in request.types],
        [v for request in group for v in request.schema_versions],
        [p for request in group for p in request.payloads],
        [m for request in group for m in request.metadata],
    )


def _lost(stream_id: str, exc: BaseException) -> Unavailable:
    return Unavailable(f"append to {stream_id!r}: database connection lost: {exc}")


def _expected_for_error(expected_version: int | None) -> int:
    return -2 if expected_version is None else expected_version
