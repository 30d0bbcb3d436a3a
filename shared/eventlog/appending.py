"""Appending to the event log: encoding an append, running it alone, in a group of
appends (group commit) or together with others in the caller's transaction, and telling
why one did not land (see store.py's docstring for the order and locking this keeps).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import asyncpg
import msgspec

from shared.db import CONNECTION_ERRORS
from shared.errors import ConcurrencyConflict, EventTooLarge, IdempotencyViolation, Unavailable
from shared.eventlog.groupcommit import ALONE, Alone
from shared.eventlog.position import NO_STREAM
from shared.eventlog.statements import (
    ANY_STORED,
    APPEND,
    APPEND_BOUNDED,
    APPEND_GROUP,
    APPEND_GROUP_IN_TRANSACTION,
    HEAD,
    STORED,
    Connection,
)
from shared.events.base import Event, Metadata, NewEvent
from shared.events.codec import EventRegistry

DEFAULT_MAX_EVENT_BYTES = 512 * 1024
"""Cap on an event's encoded payload plus metadata. The relay publishes both (metadata as
headers) in one NATS message, and NATS refuses messages over its `max_payload` (1 MiB by
default); half of that leaves room for the other headers and a server configured lower."""

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

_metadata_encoder = msgspec.json.Encoder()


class AppendResult(msgspec.Struct, frozen=True):
    """Where an append landed: positions and versions, one per event, in order."""

    global_positions: tuple[int, ...]
    stream_versions: tuple[int, ...]

    @property
    def next_expected_version(self) -> int:
        """The version to expect for the next append after this one."""
        return self.stream_versions[-1]


@dataclass(frozen=True)
class EncodedAppend:
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
        """`APPEND`'s arguments."""
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
        """Its events' encoded bytes: what group commit's limits count."""
        return sum(map(len, self.payloads)) + sum(map(len, self.metadata))


def encode(
    registry: EventRegistry,
    max_event_bytes: int,
    stream_id: str,
    events: Sequence[NewEvent],
    expected_version: int | None,
) -> EncodedAppend:
    """An append's events encoded for its statement; `EventTooLarge` for one over the cap."""
    ids: list[uuid.UUID] = []
    types: list[str] = []
    versions: list[int] = []
    payloads: list[bytes] = []
    metadata: list[str] = []
    for new in events:
        event_type, schema_version, payload = registry.encode(new.event)
        encoded_metadata = _metadata_encoder.encode(new.metadata)
        size = len(payload) + len(encoded_metadata)
        if size > max_event_bytes:
            raise EventTooLarge(event_type, stream_id, size, max_event_bytes)
        ids.append(new.event_id)
        types.append(event_type)
        versions.append(schema_version)
        payloads.append(payload)
        metadata.append(encoded_metadata.decode())
    return EncodedAppend(
        stream_id, events, expected_version, ids, types, versions, payloads, metadata
    )


async def append_group_in_transaction(
    conn: Connection, requests: Sequence[EncodedAppend]
) -> list[AppendResult] | None:
    """`EventStore.append_together`'s statement in a savepoint: all of `requests` or none."""
    if len({request.stream_id for request in requests}) < len(requests):
        return None
    savepoint = conn.transaction()
    await savepoint.start()
    try:
        rows = await conn.fetch(APPEND_GROUP_IN_TRANSACTION, *group_args(requests))
    except (
        asyncpg.UniqueViolationError,
        asyncpg.DeadlockDetectedError,
        asyncpg.SerializationError,
    ):
        await savepoint.rollback()
        return None
    except CONNECTION_ERRORS as exc:
        raise connection_lost(requests[0].stream_id, exc) from exc
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


async def append_alone(
    pool: asyncpg.Pool, registry: EventRegistry, request: EncodedAppend
) -> AppendResult:
    """One append in a transaction of its own, on a connection of `pool`."""
    try:
        async with pool.acquire() as own:
            return await append_on(own, registry, request)
    except CONNECTION_ERRORS as exc:
        raise connection_lost(request.stream_id, exc) from exc


async def append_group(
    pool: asyncpg.Pool, group: Sequence[EncodedAppend]
) -> list[AppendResult | BaseException | Alone]:
    """One statement for every append of `group` (one per stream); `ALONE` where it failed."""
    if len(group) == 1:
        statement, args = APPEND_BOUNDED, group[0].args
    else:
        statement, args = APPEND_GROUP, group_args(group)
    try:
        async with pool.acquire() as conn:
            rows = await conn.fetch(statement, *args, GROUP_LOCK_TIMEOUT)
    except CONNECTION_ERRORS as exc:
        # One statement, one transaction: all of it committed or none of it, and the
        # callers cannot tell which; a retry returns the stored positions if it did.
        return [connection_lost(request.stream_id, exc) for request in group]
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


async def append_on(
    conn: Connection, registry: EventRegistry, request: EncodedAppend
) -> AppendResult:
    """One append on `conn`, in the caller's transaction if it is in one; its exact outcome."""
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
                rows = await conn.fetch(APPEND, *args)
        else:
            rows = await conn.fetch(APPEND, *args)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "events_event_id_unique":
            return await _stored_result(conn, registry, stream_id, events)
        raise ConcurrencyConflict(stream_id, _expected_for_error(expected_version)) from exc
    except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:
        # Two transactions appending to the same streams in opposite orders wait on
        # each other's uncommitted versions; the one PostgreSQL aborts retries.
        raise ConcurrencyConflict(stream_id, _expected_for_error(expected_version)) from exc
    if not rows:
        # A retry of an append that did commit fails the version check before it can
        # hit the event-id constraint, so look for the ids before calling it a conflict.
        if await conn.fetchval(ANY_STORED, [e.event_id for e in events]):
            return await _stored_result(conn, registry, stream_id, events)
        raise await _why_not_appended(conn, stream_id, expected_version)
    rows = sorted(rows, key=lambda r: r["stream_version"])
    return AppendResult(
        tuple(r["global_position"] for r in rows), tuple(r["stream_version"] for r in rows)
    )


async def _stored_result(
    conn: Connection, registry: EventRegistry, stream_id: str, events: Sequence[NewEvent]
) -> AppendResult:
    """The original positions of a retried append, or why it is not a retry."""
    stored = {r["event_id"]: r for r in await conn.fetch(STORED, [e.event_id for e in events])}
    for new in events:
        row = stored.get(new.event_id)
        event_type, _, payload = registry.encode(new.event)
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
    conn: Connection, stream_id: str, expected_version: int | None
) -> ConcurrencyConflict:
    head = await conn.fetchrow(HEAD, stream_id)
    actual = NO_STREAM if head is None else head["stream_version"]
    if expected_version is not None and actual != expected_version:
        return ConcurrencyConflict(stream_id, expected_version, actual)
    conflict = ConcurrencyConflict(stream_id, _expected_for_error(expected_version), actual)
    conflict.args = (
        f"stream {stream_id!r} was last written by a transaction newer than this one; "
        "retry the append in a new transaction",
    )
    return conflict


def new_events(events: Iterable[Event], *, metadata: Metadata | None = None) -> list[NewEvent]:
    """Wrap events with fresh ids and shared metadata, for callers with nothing to dedupe on."""
    from shared.eventlog.envelope import envelope
    from shared.ids import new_event_id

    if metadata is None:
        # The current span's context rides with the event, so whoever handles it
        # later continues this trace (DESIGN §11: one deployment is one trace).
        metadata = envelope()
    return [NewEvent(event=e, event_id=new_event_id(), metadata=metadata) for e in events]


def group_args(group: Sequence[EncodedAppend]) -> tuple[object, ...]:
    """`APPEND_GROUP`'s arguments but the lock timeout."""
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


def connection_lost(stream_id: str, exc: BaseException) -> Unavailable:
    """Why an append failed when its connection was lost: it may or may not have landed."""
    return Unavailable(f"append to {stream_id!r}: database connection lost: {exc}")


def _expected_for_error(expected_version: int | None) -> int:
    return -2 if expected_version is None else expected_version
