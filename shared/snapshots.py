"""Snapshots of long streams: a state read as the newest snapshot and the events after it.

    read = await read_state(store, "deployment-abc", DEPLOYMENT, up_to_position=p)
    reads = await read_states(store, ["application-a", "application-b"], APPLICATION)

folds what the stream says up to the point asked for (a position, a time, or
now) as folding it from its first event would, but starts from the newest
snapshot at or before that point (`stream_snapshots`, migration 0012) and
reads only the events after it. When that tail is `SNAPSHOT_EVERY` events or
more, the state at the last multiple of `SNAPSHOT_EVERY` in it is written as a
new snapshot, so the next read of that point or later folds fewer than
`SNAPSHOT_EVERY` events: snapshots are written where reads happen, at most one
per `SNAPSHOT_EVERY` events of a stream, and short streams never get one.
`read_states` reads many streams as of now in two round trips for all of them
(a batch's applications); a stream whose tail is that long, or whose snapshot
does not decode, it leaves to `read_state`.

A snapshot is a cache, never the truth:

- one whose `code_version` is not the fold's (`shared.stream_folds`: its
  revision and its state type's shape) is not read; the next snapshot written
  at its version replaces it;
- one that does not decode is skipped (the read falls back to an older one, or
  to the stream's start) and written again by that read;
- one that cannot be written (a read-only role, a lost connection) only costs
  the next read its time;
- `slipway replay` drops them all and writes each long stream's newest one
  again (`rebuild`).

A store keeps the states it decoded last (`DECODED_MAX_BYTES`): what a snapshot
holds follows from its stream, version and code version alone, and the state is
immutable, so a repeated read of a long deployment (the API's, the log follows'
polls) skips decoding 850 kB of JSON and only reads and folds its short tail.

"At or before the point": a snapshot records the newest position and the
latest `recorded_at` among the events it folds, and serves a read only when
both are within the read's bounds, so every event it folds is one the read
would fold; the events after it are read with the same bounds.

Why `SNAPSHOT_EVERY` is 100: reading and folding a deployment event costs about
25 µs here, decoding a snapshot about 8 ns a byte (benchmarks/state_reads.py).
A short stream's state is a few kB (a few µs to decode, plus a second query),
so one of fewer than 100 events costs at most ~2.5 ms to fold from its start
and needs no snapshot; a tail of at most 100 events keeps the longest reads'
fold within a few ms of the snapshot's decoding.
"""

from __future__ import annotations

import weakref
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Generic, TypeVar

import asyncpg
import msgspec

from shared.db import CONNECTION_ERRORS
from shared.errors import Unavailable
from shared.eventlog.store import DEFAULT_PAGE_SIZE, EventStore
from shared.events.base import RecordedEvent
from shared.logs import get_logger
from shared.stream_folds import StreamFold

__all__ = ["SNAPSHOT_EVERY", "StateRead", "pack", "read_state", "read_states", "rebuild", "unpack"]

log = get_logger(__name__)

S = TypeVar("S")

SNAPSHOT_EVERY: Final = 100
"""Events between snapshots of a stream, and the longest tail a read folds after one."""

DECODED_MAX_BYTES: Final = 16 * 1024 * 1024
"""Decoded snapshots kept per store, by the size of their JSON (about twice that in memory):
some twenty of the longest deployments (2,500 stages: 850 kB), thousands of short ones."""

_NO_BOUND: Final = 2**62
_COMPRESSION: Final = 1  # zlib's fastest: 5 ms for 850 kB of JSON, 4× the size of level 6

_NEWEST: Final = """
SELECT stream_version, global_position, recorded_at, state FROM stream_snapshots
WHERE stream_id = $1 AND kind = $2 AND code_version = $3
  AND ($4::bigint IS NULL OR global_position <= $4::bigint)
  AND ($5::timestamptz IS NULL OR recorded_at <= $5::timestamptz)
  AND stream_version < $6::bigint
ORDER BY stream_version DESC
LIMIT 1
"""

# `_NEWEST` (unbounded) of several streams in one round trip: a row per stream that has one.
_NEWEST_OF_STREAMS: Final = """
SELECT s.stream_id, n.stream_version, n.global_position, n.recorded_at, n.state
FROM unnest($1::text[]) AS s(stream_id)
CROSS JOIN LATERAL (
  SELECT stream_version, global_position, recorded_at, state FROM stream_snapshots
  WHERE stream_id = s.stream_id AND kind = $2 AND code_version = $3
  ORDER BY stream_version DESC
  LIMIT 1
) AS n
"""

_WRITE: Final = """
INSERT INTO stream_snapshots (stream_id, kind, stream_version, code_version,
                              global_position, recorded_at, state)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (stream_id, kind, stream_version) DO UPDATE
SET code_version = EXCLUDED.code_version, global_position = EXCLUDED.global_position,
    recorded_at = EXCLUDED.recorded_at, state = EXCLUDED.state, written_at = clock_timestamp()
"""

_LONG_STREAMS: Final = """
SELECT stream_id FROM events
WHERE stream_id LIKE $1 || '-%'
GROUP BY stream_id
HAVING max(stream_version) + 1 >= $2::bigint
ORDER BY stream_id
"""


@dataclass(frozen=True)
class StateRead(Generic[S]):
    """A stream's state as read, and what the read cost."""

    state: S | None
    """The fold's state; None when no event was folded."""
    version: int
    """The stream version of the last event folded (-1: none)."""
    events: int
    """How many of the stream's events the state folds (the snapshot's and the tail's)."""
    read: int
    """How many events this read took from the log (the tail after the snapshot)."""
    snapshot_version: int
    """The version of the snapshot it started from (-1: the stream's start)."""


@dataclass(frozen=True)
class _Snapshot(Generic[S]):
    state: S
    version: int
    position: int
    recorded_at: datetime


async def read_state(
    store: EventStore,
    stream_id: str,
    fold: StreamFold[S],
    *,
    up_to_position: int | None = None,
    up_to_time: datetime | None = None,
    every: int = SNAPSHOT_EVERY,
) -> StateRead[S]:
    """The state of `stream_id` after its events at or before `up_to_position` and
    `up_to_time` (None: no bound), as `fold` folds them from the stream's start."""
    if every < 1:
        raise ValueError(f"every must be ≥ 1, not {every}")
    start = await _newest(store, stream_id, fold, up_to_position, up_to_time)
    folded = _Folded(stream_id, fold, start)
    kept: _Snapshot[S] | None = None  # the state at the tail's last multiple of `every`
    page_size = max(DEFAULT_PAGE_SIZE, every)
    async for page in _pages(store, stream_id, folded.version + 1, up_to_position, up_to_time,
                             page_size):  # fmt: skip
        place = folded.boundary(page, every)
        if place is not None:
            folded.add(page[: place + 1])
            kept = folded.snapshot() or kept
            page = page[place + 1 :]
        folded.add(page)
    if kept is not None:
        await _write(store, stream_id, fold, kept)
    return StateRead(
        state=folded.state,
        version=folded.version,
        events=(start.version + 1 if start else 0) + folded.read,
        read=folded.read,
        snapshot_version=start.version if start else -1,
    )


async def read_states(
    store: EventStore,
    stream_ids: Iterable[str],
    fold: StreamFold[S],
    *,
    every: int = SNAPSHOT_EVERY,
) -> dict[str, StateRead[S]]:
    """`read_state` (as of now) of each of `stream_ids`, in two round trips for all of them
    (their newest snapshots, then the events after each) rather than two each: a batch of
    short streams, as the planner reads the applications a push triggered.

    A stream this cannot settle on its own is read by `read_state` alone: one whose tail
    after its snapshot is `every` events or more (that read writes the snapshot the next
    one starts from), or whose newest snapshot does not decode."""
    if every < 1:
        raise ValueError(f"every must be ≥ 1, not {every}")
    wanted = list(dict.fromkeys(stream_ids))
    if not wanted:
        return {}
    try:
        rows = await store.pool.fetch(_NEWEST_OF_STREAMS, wanted, fold.kind, fold.code_version)
    except CONNECTION_ERRORS as exc:
        raise Unavailable(f"read {len(wanted)} streams: database connection lost: {exc}") from exc
    starts: dict[str, _Snapshot[S] | None] = dict.fromkeys(wanted)
    alone: list[str] = []
    for row in rows:
        snapshot = _decoded_row(store, row["stream_id"], fold, row)
        if snapshot is None:
            alone.append(row["stream_id"])
            del starts[row["stream_id"]]
        else:
            starts[row["stream_id"]] = snapshot
    tails = await store.read_streams_from(
        {stream_id: start.version + 1 if start else 0 for stream_id, start in starts.items()},
        limit=every,
    )
    states: dict[str, StateRead[S]] = {}
    for stream_id, start in starts.items():
        tail = tails[stream_id]
        if len(tail) >= every:
            alone.append(stream_id)  # long enough to keep a snapshot: `read_state` writes it
            continue
        folded = _Folded(stream_id, fold, start)
        folded.add(tail)
        states[stream_id] = StateRead(
            state=folded.state,
            version=folded.version,
            events=(start.version + 1 if start else 0) + folded.read,
            read=folded.read,
            snapshot_version=start.version if start else -1,
        )
    for stream_id in alone:
        states[stream_id] = await read_state(store, stream_id, fold, every=every)
    return {stream_id: states[stream_id] for stream_id in wanted}


class _Folded(Generic[S]):
    """A read's fold so far: the state, where it stands, and whether it may be kept."""

    def __init__(self, stream_id: str, fold: StreamFold[S], start: _Snapshot[S] | None) -> None:
        self._stream_id = stream_id
        self._fold = fold
        self.state: S | None = start.state if start else None
        self.version = start.version if start else -1
        self._first = self.version + 1
        self._position = start.position if start else 0
        self._latest = start.recorded_at if start else None
        self._contiguous = True
        """Every version up to `version` is folded: no event left out by a time bound."""
        self.read = 0

    def boundary(self, page: list[RecordedEvent], every: int) -> int | None:
        """The place in `page` of its last event at a multiple of `every` (its version + 1)
        that a snapshot may be kept at: a tail of `every` events or more, none left out."""
        if not page or not self._contiguous:
            return None
        if page[-1].stream_version - self.version != len(page):
            return None  # a gap: versions left out by a time bound; the state is no prefix's
        aligned = (page[-1].stream_version + 1) // every * every - 1
        if aligned <= self.version or aligned + 1 - self._first < every:
            return None
        return aligned - self.version - 1

    def add(self, events: list[RecordedEvent]) -> None:
        if not events:
            return
        self.state = self._fold.fold(self._stream_id, self.state, events)
        self._contiguous = self._contiguous and events[-1].stream_version - self.version == len(
            events
        )
        self.version = events[-1].stream_version
        self._position = max(self._position, max(e.global_position for e in events))
        latest = max(e.recorded_at for e in events)
        self._latest = latest if self._latest is None else max(self._latest, latest)
        self.read += len(events)

    def snapshot(self) -> _Snapshot[S] | None:
        if not self._contiguous or self.state is None or self._latest is None:
            return None
        return _Snapshot(self.state, self.version, self._position, self._latest)


def pack(fold: StreamFold[S], state: S) -> bytes:
    """A state as a snapshot stores it: the fold's JSON, compressed (a 2,500-stage
    deployment's 850 kB become 21 kB, which PostgreSQL sends in a fraction of the time and
    zlib inflates in 1.5 ms)."""
    return zlib.compress(fold.encode(state), _COMPRESSION)


def unpack(fold: StreamFold[S], stored: bytes) -> S:
    """A snapshot's state; `zlib.error` or `msgspec.DecodeError` (or `ValidationError`) when
    it is corrupt."""
    return fold.decode(zlib.decompress(stored))


async def _pages(
    store: EventStore,
    stream_id: str,
    first: int,
    up_to_position: int | None,
    up_to_time: datetime | None,
    page_size: int,
) -> AsyncIterator[list[RecordedEvent]]:
    """The stream's events from version `first` within the bounds, a page at a time."""
    while True:
        page = await store.read_stream(
            stream_id,
            from_version=first,
            up_to_position=up_to_position,
            up_to_time=up_to_time,
            limit=page_size,
        )
        if page:
            yield page
        if len(page) < page_size:
            return
        first = page[-1].stream_version + 1


async def _newest(
    store: EventStore,
    stream_id: str,
    fold: StreamFold[S],
    up_to_position: int | None,
    up_to_time: datetime | None,
) -> _Snapshot[S] | None:
    """The newest snapshot within the bounds that decodes; None: fold from the start."""
    below = _NO_BOUND
    while True:
        try:
            row = await store.pool.fetchrow(
                _NEWEST, stream_id, fold.kind, fold.code_version, up_to_position, up_to_time, below
            )
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"read {stream_id!r}: database connection lost: {exc}") from exc
        if row is None:
            return None
        snapshot = _decoded_row(store, stream_id, fold, row)
        if snapshot is None:
            # A cache, never the truth: skip it; the read passing its version writes it again.
            below = row["stream_version"]
            continue
        return snapshot


def _decoded_row(
    store: EventStore, stream_id: str, fold: StreamFold[S], row: asyncpg.Record
) -> _Snapshot[S] | None:
    """A snapshot row's state (decoded once per store: `_Decoded`); None, logged, when it
    does not decode."""
    key = (stream_id, fold.kind, row["stream_version"], fold.code_version)
    decoded = _decoded(store)
    state = decoded.get(key)
    if state is None:
        try:
            json = zlib.decompress(row["state"])
            state = fold.decode(json)
        except (zlib.error, msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning(
                "snapshot_undecodable",
                stream_id=stream_id,
                kind=fold.kind,
                version=row["stream_version"],
                error=str(exc),
            )
            return None
        decoded.put(key, state, len(json))
    return _Snapshot(state, row["stream_version"], row["global_position"], row["recorded_at"])


class _Decoded:
    """The snapshots a store decoded last, by (stream, kind, version, code version): what a
    snapshot holds follows from those alone (the events it folds never change), and its
    state is immutable (frozen Structs), so a repeated read skips decoding it again — most of
    a long deployment's read. Bounded by the JSON bytes they came from, oldest out first."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._states: OrderedDict[tuple[str, str, int, str], tuple[Any, int]] = OrderedDict()

    def get(self, key: tuple[str, str, int, str]) -> Any:
        found = self._states.get(key)
        if found is None:
            return None
        self._states.move_to_end(key)
        return found[0]

    def put(self, key: tuple[str, str, int, str], state: object, size: int) -> None:
        if size > self._max_bytes or key in self._states:
            return
        self._states[key] = (state, size)
        self._bytes += size
        while self._bytes > self._max_bytes:
            _, (_, dropped) = self._states.popitem(last=False)
            self._bytes -= dropped


_DECODED: Final[weakref.WeakKeyDictionary[EventStore, _Decoded]] = weakref.WeakKeyDictionary()


def _decoded(store: EventStore) -> _Decoded:
    """The store's own cache of decoded snapshots (one per store: a schema of its own)."""
    cache = _DECODED.get(store)
    if cache is None:
        cache = _DECODED[store] = _Decoded(DECODED_MAX_BYTES)
    return cache


async def _write(
    store: EventStore, stream_id: str, fold: StreamFold[S], snapshot: _Snapshot[S]
) -> None:
    """Keep `snapshot`; a failure costs only a later read its time, so it is logged, not raised."""
    try:
        await store.pool.execute(
            _WRITE,
            stream_id,
            fold.kind,
            snapshot.version,
            fold.code_version,
            snapshot.position,
            snapshot.recorded_at,
            pack(fold, snapshot.state),
        )
    except (asyncpg.PostgresError, *CONNECTION_ERRORS) as exc:
        log.warning(
            "snapshot_not_written",
            stream_id=stream_id,
            kind=fold.kind,
            version=snapshot.version,
            error=str(exc),
        )


async def rebuild(
    store: EventStore, folds: Iterable[StreamFold[Any]], *, every: int = SNAPSHOT_EVERY
) -> int:
    """Drop every snapshot, then write each long stream's newest one again (`slipway replay`):
    a snapshot is a cache, and this one is rebuilt from the log alone. How many streams
    got one."""
    try:
        await store.pool.execute("DELETE FROM stream_snapshots")
        written = 0
        for fold in folds:
            for row in await store.pool.fetch(_LONG_STREAMS, fold.kind, every):
                read = await read_state(store, row["stream_id"], fold, every=every)
                written += read.events >= every
    except CONNECTION_ERRORS as exc:
        raise Unavailable(f"rebuild snapshots: database connection lost: {exc}") from exc
    return written
