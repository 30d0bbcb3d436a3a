"""Concurrent writers and tailing readers of the event log, against a real PostgreSQL.

The log's promise to readers (DESIGN §3, shared/eventlog/store.py): reading in
`(tx_id, global_position)` order below the snapshot horizon, every reader sees
every committed event exactly once, all readers in the same order, and per
stream in `stream_version` order — however writers interleave, even while one
transaction stays open for a long time.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import asyncpg
import pytest

from shared.db import connect
from shared.errors import ConcurrencyConflict
from shared.eventlog import (
    ANY,
    NO_STREAM,
    START,
    EventStore,
    LogPosition,
    new_events,
    position_of,
)
from shared.events import NewEvent, RecordedEvent
from shared.events.catalog import ApplicationDisabled
from shared.ids import new_id
from shared.testing import wait_until

TIMEOUT = 10.0
GUARD_MESSAGE = "newer than this one"


def _events(label: str, count: int = 1) -> list[NewEvent]:
    return new_events([ApplicationDisabled(application_id=f"{label}-{n}") for n in range(count)])


@pytest.fixture
async def connections(
    app_database_url: str, schema: str
) -> AsyncIterator[Callable[[], Awaitable[asyncpg.Connection]]]:
    """Opens connections of the test's own (not from the pool), closed at the end."""
    opened: list[asyncpg.Connection] = []

    async def open_one() -> asyncpg.Connection:
        conn = await connect(app_database_url, schema=schema)
        opened.append(conn)
        return conn

    yield open_one
    for conn in opened:
        await conn.close()


@dataclass
class Watch:
    """What the test and its tailing readers share."""

    epoch: int = 0
    """Bumped by the test; a reader records the epoch of its last read that came back empty."""
    held_tx: int | None = None
    """The transaction id of the held-open transaction, while it is open."""
    violations: list[str] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def wait_until(self, predicate: Callable[[], bool], what: str) -> None:
        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(predicate), TIMEOUT)
            except TimeoutError:
                pytest.fail(f"timed out after {TIMEOUT}s waiting for {what}")


@dataclass
class Reader:
    """A tailer: `EventStore.read_all` in a loop, on its own connection, from its checkpoint."""

    name: str
    store: EventStore
    conn: asyncpg.Connection
    limit: int
    checkpoint: LogPosition = START
    seen: list[RecordedEvent] = field(default_factory=list)
    caught_up: int = -1

    async def tail(self, watch: Watch, stop: asyncio.Event) -> None:
        while not stop.is_set():
            epoch, held = watch.epoch, watch.held_tx
            batch = await self.store.read_all(self.checkpoint, limit=self.limit, conn=self.conn)
            if batch:
                self.seen.extend(batch)
                self.checkpoint = position_of(batch[-1])
            else:
                self.caught_up = epoch
            # Held open both before and after the read: the read saw it uncommitted.
            if held is not None and watch.held_tx is not None and self.checkpoint.tx_id >= held:
                watch.violations.append(
                    f"{self.name} moved to {self.checkpoint} past open transaction {held}"
                )
            async with watch.changed:
                watch.changed.notify_all()
            if not batch:
                await asyncio.sleep(0.002)  # poll interval of an idle tailer


class Writer:
    """Appends to random shared streams, now and then to two streams in one transaction."""

    def __init__(self, name: str, store: EventStore, conn: asyncpg.Connection, seed: int) -> None:
        self.name = name
        self.store = store
        self.conn = conn
        self.rng = random.Random(seed)
        self.appended: list[uuid.UUID] = []
        self.guard_refusals = 0
        self._count = 0

    async def run(self, streams: Sequence[str], appends: int, *, two_stream_share: float) -> None:
        for _ in range(appends):
            await asyncio.sleep(self.rng.uniform(0, 0.003))  # pacing: writers interleave at random
            if self.rng.random() < two_stream_share:
                # Sorted, so that two writers never wait on each other in a cycle.
                chosen = sorted(self.rng.sample(list(streams), 2))
            else:
                chosen = [self.rng.choice(streams)]
            batches = {s: self._batch() for s in chosen}
            await self._append_retrying(batches)
            self.appended += [e.event_id for batch in batches.values() for e in batch]

    def _batch(self) -> list[NewEvent]:
        self._count += 1
        return _events(f"{self.name}-{self._count}", self.rng.randint(1, 3))

    async def _append_retrying(self, batches: dict[str, list[NewEvent]]) -> None:
        for _ in range(200):
            try:
                if len(batches) == 1:
                    [(stream, batch)] = batches.items()
                    await self.store.append(stream, batch, expected_version=ANY, conn=self.conn)
                    return
                async with self.conn.transaction():
                    for stream, batch in batches.items():
                        await self.store.append(stream, batch, expected_version=ANY, conn=self.conn)
                        await asyncio.sleep(self.rng.uniform(0, 0.002))  # hold the transaction open
                return
            except ConcurrencyConflict as conflict:
                self.guard_refusals += GUARD_MESSAGE in str(conflict)
                await asyncio.sleep(self.rng.uniform(0, 0.002))  # jitter before the retry
        pytest.fail(f"{self.name}: 200 conflicts in a row appending to {list(batches)}")


async def _write_all(writers: Sequence[Writer], streams: Sequence[str], appends: int) -> None:
    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(*(w.run(streams, appends, two_stream_share=0.3) for w in writers))


async def _all_caught_up(
    watch: Watch, readers: Sequence[Reader], reached: Callable[[Reader], bool], what: str
) -> None:
    """Wait until every reader has `reached` what it should, then read again and found nothing.

    Both, because the horizon is the whole server's: another session's open transaction
    can hold readers back for a while, so an empty read alone does not mean "all read".
    """
    watch.epoch += 1
    target = watch.epoch
    await watch.wait_until(lambda: all(reached(r) and r.caught_up >= target for r in readers), what)


def _assert_per_stream_order(feed: Sequence[RecordedEvent], who: str) -> None:
    versions: dict[str, list[int]] = defaultdict(list)
    for event in feed:
        versions[event.stream_id].append(event.stream_version)
    for stream, seen in versions.items():
        assert seen == list(range(len(seen))), f"{who}: {stream} in feed order is {seen}"


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
async def test_tailing_readers_see_every_event_once_in_one_order_around_a_held_transaction(
    store: EventStore,
    connections: Callable[[], Awaitable[asyncpg.Connection]],
    outcome: str,
) -> None:
    """Readers tailing past a long-open transaction see each committed event once, in one order."""
    streams = [f"application-{new_id()}" for _ in range(5)]
    held_stream = f"application-{new_id()}"
    writers = [Writer(f"w{i}", store, await connections(), seed=1000 + i) for i in range(6)]
    readers = [
        Reader(f"r{i}", store, await connections(), limit=limit)
        for i, limit in enumerate((1, 7, 500))
    ]
    held_conn = await connections()
    watch, stop = Watch(), asyncio.Event()
    tails = [asyncio.create_task(r.tail(watch, stop)) for r in readers]
    try:
        # Phase A: committed before the held transaction starts.
        await _write_all(writers, streams, appends=3)
        phase_a = {i for w in writers for i in w.appended}

        # The held transaction appends, then stays open while everyone else commits.
        held = held_conn.transaction()
        await held.start()
        held_batch = _events("held", 2)
        held_result = await store.append(
            held_stream, held_batch, expected_version=NO_STREAM, conn=held_conn
        )
        held_tx = int(await held_conn.fetchval("SELECT pg_current_xact_id()"))
        watch.held_tx = held_tx

        # Phase B: many commits after the held transaction's insert.
        await _write_all(writers, streams, appends=12)
        phase_b = {i for w in writers for i in w.appended} - phase_a
        first_b = await store.pool.fetchval(
            "SELECT min(global_position) FROM events WHERE event_id = ANY($1::uuid[])",
            list(phase_b),
        )
        # What makes this a trap for a reader that goes by position alone.
        assert max(held_result.global_positions) < first_b
        await _all_caught_up(
            watch,
            readers,
            lambda r: len(r.seen) >= len(phase_a),
            "readers to reach the held transaction's horizon",
        )
        held_ids = {e.event_id for e in held_batch}
        for reader in readers:
            assert reader.checkpoint < LogPosition(held_tx, 0), reader.name
            seen = [e.event_id for e in reader.seen]
            assert not held_ids & set(seen), f"{reader.name} saw an uncommitted event"
            assert Counter(seen) == Counter(phase_a), reader.name

        watch.held_tx = None  # before COMMIT is sent: from here on it may be visible
        await (held.commit() if outcome == "commit" else held.rollback())

        # Phase C: a few more after it ended.
        await _write_all(writers, streams, appends=3)
        in_log = await store.pool.fetch(
            "SELECT event_id, tx_id, global_position FROM events ORDER BY tx_id, global_position"
        )
        end = position_of(in_log[-1])
        await _all_caught_up(
            watch, readers, lambda r: r.checkpoint >= end, "readers to reach the end of the log"
        )
    finally:
        stop.set()
        await asyncio.gather(*tails)

    assert watch.violations == []
    log_order = [r["event_id"] for r in in_log]
    appended = {i for w in writers for i in w.appended}
    expected = appended | held_ids if outcome == "commit" else appended
    assert set(log_order) == expected and len(log_order) == len(expected)
    for reader in readers:
        order = [e.event_id for e in reader.seen]
        assert [i for i, n in Counter(order).items() if n > 1] == [], f"{reader.name} duplicates"
        assert order == log_order, f"{reader.name} disagrees with the log's commit order"
        _assert_per_stream_order(reader.seen, reader.name)
    if outcome == "rollback":
        assert await store.stream_version(held_stream) == NO_STREAM


async def test_per_stream_order_in_global_feed_equals_version_order(
    store: EventStore, connections: Callable[[], Awaitable[asyncpg.Connection]]
) -> None:
    """Under contended multi-stream transactions, each stream's events come in version order."""
    streams = [f"application-{new_id()}" for _ in range(4)]
    writers = [Writer(f"w{i}", store, await connections(), seed=2000 + i) for i in range(8)]
    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(*(w.run(streams, 15, two_stream_share=0.6) for w in writers))

    feed = await _read_log(store, len([i for w in writers for i in w.appended]), limit=50)
    assert Counter(e.event_id for e in feed) == Counter(i for w in writers for i in w.appended)
    _assert_per_stream_order(feed, "read_all")
    # Not luck: the schedule made older transactions reach streams after newer ones.
    assert sum(w.guard_refusals for w in writers) > 0, "the ordering guard was never exercised"
    for stream in streams:
        in_feed = [e.event_id for e in feed if e.stream_id == stream]
        assert in_feed == [e.event_id for e in await store.read_stream(stream)]


async def test_append_after_a_newer_transaction_wrote_the_stream_conflicts_then_retry_succeeds(
    store: EventStore, connections: Callable[[], Awaitable[asyncpg.Connection]]
) -> None:
    """A transaction older than a stream's head is refused that stream; a fresh one succeeds."""
    a, b = f"application-{new_id()}", f"application-{new_id()}"
    await store.append(b, _events("b0"), expected_version=NO_STREAM)
    older, newer = await connections(), await connections()
    to_a, to_b = _events("older-a"), _events("older-b")

    tx = older.transaction()
    await tx.start()
    await store.append(a, to_a, expected_version=NO_STREAM, conn=older)
    older_xid = int(await older.fetchval("SELECT pg_current_xact_id()"))
    await store.append(b, _events("newer-b"), expected_version=0, conn=newer)
    newer_xid = await store.pool.fetchval(
        "SELECT tx_id FROM events WHERE stream_id = $1 AND stream_version = 1", b
    )
    assert older_xid < newer_xid
    # The expected version is right; only the transaction's age is wrong.
    with pytest.raises(ConcurrencyConflict, match=GUARD_MESSAGE) as refused:
        await store.append(b, to_b, expected_version=1, conn=older)
    assert (refused.value.expected_version, refused.value.actual_version) == (1, 1)
    assert await older.fetchval("SELECT 1") == 1  # the caller's transaction is still usable
    await tx.rollback()

    async with older.transaction():
        first = await store.append(a, to_a, expected_version=NO_STREAM, conn=older)
        second = await store.append(b, to_b, expected_version=1, conn=older)
    assert (first.stream_versions, second.stream_versions) == ((0,), (2,))
    feed = await _read_log(store, 4)
    _assert_per_stream_order(feed, "read_all")
    assert [e.stream_version for e in feed if e.stream_id == b] == [0, 1, 2]


async def test_one_transaction_may_append_to_the_same_stream_twice(
    store: EventStore, connections: Callable[[], Awaitable[asyncpg.Connection]]
) -> None:
    """The ordering guard refuses only older transactions, not the one that wrote the head."""
    stream = f"application-{new_id()}"
    conn = await connections()
    async with conn.transaction():
        first = await store.append(stream, _events("one"), expected_version=NO_STREAM, conn=conn)
        second = await store.append(stream, _events("two", 2), expected_version=0, conn=conn)
        third = await store.append(stream, _events("three"), expected_version=ANY, conn=conn)
    assert (first.stream_versions, second.stream_versions, third.stream_versions) == (
        (0,),
        (1, 2),
        (3,),
    )
    assert [e.stream_version for e in await _read_log(store, 4)] == [0, 1, 2, 3]


async def test_opposite_order_appends_that_deadlock_raise_concurrency_conflict(
    store: EventStore, connections: Callable[[], Awaitable[asyncpg.Connection]]
) -> None:
    """Two transactions appending to two streams in opposite orders: one commits, one conflicts."""
    a, b = f"application-{new_id()}", f"application-{new_id()}"
    first_done = {a: asyncio.Event(), b: asyncio.Event()}

    async def append_both(conn: asyncpg.Connection, first: str, second: str) -> str:
        async with conn.transaction():
            await store.append(first, _events(first), expected_version=NO_STREAM, conn=conn)
            first_done[first].set()
            await asyncio.wait_for(first_done[second].wait(), TIMEOUT)
            await store.append(second, _events(first), expected_version=NO_STREAM, conn=conn)
        return first

    async with asyncio.timeout(TIMEOUT):
        outcomes = await asyncio.gather(
            append_both(await connections(), a, b),
            append_both(await connections(), b, a),
            return_exceptions=True,
        )
    conflicts = [o for o in outcomes if isinstance(o, ConcurrencyConflict)]
    winners = [o for o in outcomes if isinstance(o, str)]
    assert len(conflicts) == 1 and len(winners) == 1, outcomes
    # Only the winner's transaction is in the log: one event in each stream, written by it.
    stored = await _read_log(store, 2)
    assert sorted(e.stream_id for e in stored) == sorted([a, b])
    written_by = {
        e.event.application_id for e in stored if isinstance(e.event, ApplicationDisabled)
    }
    assert written_by == {f"{winners[0]}-0"}


async def _eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll `check` (PostgreSQL has no notification for it) until true, or fail after TIMEOUT."""
    await wait_until(check, TIMEOUT, what=what)


async def _read_log(store: EventStore, count: int, *, limit: int = 1000) -> list[RecordedEvent]:
    """The whole log through `read_all`, once it holds `count` committed events."""
    feed: list[RecordedEvent] = []

    async def read_more() -> bool:
        while batch := await store.read_all(position_of(feed[-1]) if feed else START, limit=limit):
            feed.extend(batch)
        return len(feed) >= count

    await _eventually(read_more, f"read_all to return {count} events")
    return feed


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


# Readers that each keep only one half of the rule, to show why it takes both.
async def _by_position(conn: asyncpg.Connection, after: LogPosition) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT tx_id, global_position, event_id FROM events"
            " WHERE global_position > $1 ORDER BY global_position",
            after.global_position,
        )
    )


async def _commit_order_without_horizon(
    conn: asyncpg.Connection, after: LogPosition
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT tx_id, global_position, event_id FROM events"
            " WHERE (tx_id, global_position) > ($1::xid8, $2::bigint)"
            " ORDER BY tx_id, global_position",
            after.tx_id,
            after.global_position,
        )
    )


async def _horizon_in_position_order(
    conn: asyncpg.Connection, after: LogPosition
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT tx_id, global_position, event_id FROM events"
            " WHERE global_position > $1 AND tx_id < pg_snapshot_xmin(pg_current_snapshot())"
            " ORDER BY global_position",
            after.global_position,
        )
    )


NAIVE_READERS = {
    "position-order": _by_position,
    "commit-order-without-horizon": _commit_order_without_horizon,
    "horizon-in-position-order": _horizon_in_position_order,
}


@pytest.mark.parametrize("naive", list(NAIVE_READERS))
async def test_naive_readers_lose_a_late_commit_that_the_store_reader_keeps(
    store: EventStore, connections: Callable[[], Awaitable[asyncpg.Connection]], naive: str
) -> None:
    """A reader without both commit order and the horizon loses an event; read_all does not."""
    naive_read = NAIVE_READERS[naive]
    w_conn, h_conn, naive_conn, store_conn = [await connections() for _ in range(4)]

    async def drain_naive(after: LogPosition, into: list[uuid.UUID]) -> LogPosition:
        while rows := await naive_read(naive_conn, after):
            into += [r["event_id"] for r in rows]
            after = LogPosition(rows[-1]["tx_id"], rows[-1]["global_position"])
        return after

    async def drain_store(after: LogPosition, into: list[uuid.UUID]) -> LogPosition:
        while batch := await store.read_all(after, limit=1, conn=store_conn):
            into += [e.event_id for e in batch]
            after = position_of(batch[-1])
        return after

    async def horizon() -> int:
        return int(await store.pool.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())"))

    # W takes a transaction id first (as if it had written elsewhere), H inserts and stays
    # open, Z inserts and commits, then W inserts and commits: ids W < H < Z, positions
    # H < Z < W.
    w_events, h_events, z_events = _events("w"), _events("h"), _events("z")
    w_tx, h_tx = w_conn.transaction(), h_conn.transaction()
    await w_tx.start()
    await w_conn.fetchval("SELECT pg_current_xact_id()")
    await h_tx.start()
    await store.append(f"application-{new_id()}", h_events, expected_version=ANY, conn=h_conn)
    await store.append(f"application-{new_id()}", z_events, expected_version=ANY)
    await store.append(f"application-{new_id()}", w_events, expected_version=ANY, conn=w_conn)
    await w_tx.commit()
    h_xid = int(await h_conn.fetchval("SELECT pg_current_xact_id()"))
    # Only H may hold the horizon back (not some other session's older transaction).
    await _eventually(lambda: _equals(horizon(), h_xid), "the horizon to reach H")

    naive_seen: list[uuid.UUID] = []
    store_seen: list[uuid.UUID] = []
    naive_at = await drain_naive(START, naive_seen)
    store_at = await drain_store(START, store_seen)
    assert len(store_seen) == 1
    await h_tx.commit()
    await drain_naive(naive_at, naive_seen)

    async def store_has_all() -> bool:
        nonlocal store_at
        store_at = await drain_store(store_at, store_seen)
        return len(store_seen) >= 3

    await _eventually(store_has_all, "read_all to return the late commit")

    w, h, z = w_events[0].event_id, h_events[0].event_id, z_events[0].event_id
    rows = {r["event_id"]: r for r in await store.pool.fetch("SELECT * FROM events")}
    assert rows[w]["tx_id"] < rows[h]["tx_id"] < rows[z]["tx_id"]
    assert rows[h]["global_position"] < rows[z]["global_position"] < rows[w]["global_position"]
    assert store_seen == [w, h, z]
    assert h not in naive_seen, f"{naive} unexpectedly kept the late commit"
