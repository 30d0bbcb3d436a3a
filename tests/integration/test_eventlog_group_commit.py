"""Group commit in the event store, against a real PostgreSQL (shared/eventlog/groupcommit.py).

Appends started together with `asyncio.gather` form a group deterministically:
the first finds nothing in flight and goes at once, alone; the others run
while its statement is in flight, so they queue and go together as soon as it
ends. Each group's rows share one transaction id, which is how the tests see
that a group was one transaction.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Sequence
from typing import Any

import asyncpg
import pytest

from shared.db import connect
from shared.errors import ConcurrencyConflict, IdempotencyViolation
from shared.eventlog import ANY, NO_STREAM, AppendResult, EventStore, new_events
from shared.eventlog.store import BATCH_EVENTS
from shared.events import NewEvent
from shared.events.catalog import ApplicationDisabled
from shared.ids import new_id

TIMEOUT = 5.0


def _events(label: str, count: int = 1) -> list[NewEvent]:
    return new_events([ApplicationDisabled(application_id=f"{label}-{n}") for n in range(count)])


def _stream() -> str:
    return f"application-{new_id()}"


async def _together(*appends: Coroutine[Any, Any, AppendResult]) -> list[Any]:
    async with asyncio.timeout(TIMEOUT):
        return list(await asyncio.gather(*appends, return_exceptions=True))


async def _tx_ids(store: EventStore, results: Sequence[AppendResult]) -> set[int]:
    positions = [p for result in results for p in result.global_positions]
    rows = await store.pool.fetch(
        "SELECT DISTINCT tx_id FROM events WHERE global_position = ANY($1::bigint[])", positions
    )
    return {int(row["tx_id"]) for row in rows}


async def test_a_lone_append_goes_at_once_and_never_forms_a_group(store: EventStore) -> None:
    """Nothing in flight: each append is its own statement, as before group commit."""
    stream = _stream()
    for version in range(NO_STREAM, 2):
        await store.append(stream, _events(f"lone{version}"), expected_version=version)
    assert store.group_commit.groups == 0
    assert [e.stream_version for e in await store.read_stream(stream)] == [0, 1, 2]


async def test_a_group_commits_in_one_transaction_and_a_conflicting_append_fails_alone(
    store: EventStore,
) -> None:
    """Appends queued behind one in flight commit together; the one whose check fails is refused
    with the exact error, and nothing of it is written."""
    first, a, b, taken = _stream(), _stream(), _stream(), _stream()
    await store.append(taken, _events("taken"), expected_version=NO_STREAM)
    a_events, b_events, late = _events("a", 2), _events("b"), _events("late")

    outcomes = await _together(
        store.append(first, _events("first"), expected_version=NO_STREAM),
        store.append(a, a_events, expected_version=NO_STREAM),
        store.append(taken, late, expected_version=NO_STREAM),
        store.append(b, b_events, expected_version=NO_STREAM),
    )

    first_result, a_result, conflict, b_result = outcomes
    assert store.group_commit.groups == 1
    assert a_result.stream_versions == (0, 1) and b_result.stream_versions == (0,)
    assert list(a_result.global_positions) == sorted(a_result.global_positions)
    assert len(await _tx_ids(store, [a_result, b_result])) == 1, "the group is one transaction"
    assert await _tx_ids(store, [first_result]) != await _tx_ids(store, [a_result])
    assert isinstance(conflict, ConcurrencyConflict)
    assert (conflict.stream_id, conflict.expected_version, conflict.actual_version) == (
        taken,
        NO_STREAM,
        0,
    )
    assert [e.event_id for e in await store.read_stream(taken)] != [late[0].event_id]
    assert await store.stream_version(taken) == 0
    assert [e.event_id for e in await store.read_stream(a)] == [e.event_id for e in a_events]


async def test_an_idempotent_retry_inside_a_group_returns_the_stored_positions(
    store: EventStore,
) -> None:
    """A retried append in a group (same ids, same or no expected version) returns where it
    was stored; a reused id for another event is refused; the rest of the group commits."""
    stream, reused_in, other = _stream(), _stream(), _stream()
    batch = _events("retried", 2)
    stored = await store.append(stream, batch, expected_version=NO_STREAM)
    fresh = _events("fresh")
    # The same event id as the first of `batch`, but another event.
    [imposter] = _events("imposter")
    imposter = NewEvent(
        event=imposter.event, event_id=batch[0].event_id, metadata=imposter.metadata
    )

    outcomes = await _together(
        store.append(_stream(), _events("first"), expected_version=NO_STREAM),
        store.append(stream, batch, expected_version=NO_STREAM),
        store.append(other, fresh, expected_version=NO_STREAM),
        store.append(reused_in, [imposter], expected_version=ANY),
        store.append(stream, batch, expected_version=ANY),
    )

    _, retried, fresh_result, refused, retried_any = outcomes
    assert store.group_commit.groups >= 1
    assert retried == stored and retried_any == stored
    assert isinstance(fresh_result, AppendResult) and fresh_result.stream_versions == (0,)
    assert isinstance(refused, IdempotencyViolation)
    counts = await store.pool.fetch(
        "SELECT event_id, count(*) AS n FROM events WHERE event_id = ANY($1::uuid[])"
        " GROUP BY event_id",
        [e.event_id for e in [*batch, *fresh]],
    )
    assert {row["event_id"]: row["n"] for row in counts} == {
        e.event_id: 1 for e in [*batch, *fresh]
    }
    assert await store.stream_version(reused_in) == NO_STREAM


async def test_appends_to_one_stream_commit_in_the_order_they_arrived(store: EventStore) -> None:
    """A group holds one append per stream; the next waits for it, so arrival order is kept."""
    stream = _stream()
    batches = [_events(f"in-order{n}") for n in range(4)]

    outcomes = await _together(
        store.append(stream, batches[0], expected_version=NO_STREAM),
        *(store.append(stream, batch, expected_version=ANY) for batch in batches[1:]),
    )

    assert [o.stream_versions for o in outcomes] == [(0,), (1,), (2,), (3,)]
    history = await store.read_stream(stream)
    assert [e.event_id for e in history] == [b[0].event_id for b in batches]


HEAVY_EVENTS = BATCH_EVENTS


async def test_a_batch_commits_on_its_own_beside_the_group_and_keeps_its_streams_order(
    store: EventStore,
) -> None:
    """A heavy append (a batch) goes at once in a transaction of its own instead of joining
    the group; one behind a write to its stream still commits after it."""
    mine, other = _stream(), _stream()
    outcomes = await _together(
        store.append(_stream(), _events("first"), expected_version=NO_STREAM),  # at once
        store.append(_stream(), _events("queued"), expected_version=NO_STREAM),
        store.append(_stream(), _events("queued2"), expected_version=NO_STREAM),
        store.append(other, _events("batch", HEAVY_EVENTS), expected_version=NO_STREAM),
        store.append(mine, _events("before"), expected_version=NO_STREAM),
        store.append(mine, _events("behind", HEAVY_EVENTS), expected_version=ANY),
    )
    assert not [o for o in outcomes if isinstance(o, BaseException)]
    _first, queued, queued2, batch, before, behind = outcomes
    assert len(await _tx_ids(store, [queued, queued2])) == 1  # the group
    assert (await _tx_ids(store, [batch])).isdisjoint(await _tx_ids(store, [queued]))
    assert store.group_commit.heavy_alone == 1  # `behind` waited for `before`
    assert before.stream_versions == (0,)
    assert behind.stream_versions == tuple(range(1, HEAVY_EVENTS + 1))


async def test_a_stream_held_by_an_open_transaction_does_not_stall_the_rest_of_its_group(
    store: EventStore, app_database_url: str, schema: str
) -> None:
    """A group whose insert would wait on another transaction's uncommitted append gives up
    after the lock timeout: its other appends commit at once; the blocked one goes alone."""
    held, free = _stream(), _stream()
    holder: asyncpg.Connection = await connect(app_database_url, schema=schema)
    try:
        tx = holder.transaction()
        await tx.start()
        await store.append(held, _events("holder"), expected_version=NO_STREAM, conn=holder)
        first = asyncio.ensure_future(
            store.append(_stream(), _events("first"), expected_version=NO_STREAM)
        )
        blocked = asyncio.ensure_future(
            store.append(held, _events("blocked"), expected_version=NO_STREAM)
        )
        free_result = asyncio.ensure_future(
            store.append(free, _events("free"), expected_version=NO_STREAM)
        )
        try:
            # While the holder's transaction is still open.
            assert (await asyncio.wait_for(free_result, TIMEOUT)).stream_versions == (0,)
            await asyncio.wait_for(first, TIMEOUT)
            assert not blocked.done()
        finally:
            await tx.commit()
        with pytest.raises(ConcurrencyConflict):
            await asyncio.wait_for(blocked, TIMEOUT)
    finally:
        await holder.close()
    assert store.group_commit.groups == 1
    assert await store.stream_version(held) == 0


async def test_a_lone_append_waiting_on_a_lock_does_not_hold_up_the_appends_after_it(
    store: EventStore, app_database_url: str, schema: str
) -> None:
    """An append that went at once and then waits on another transaction leaves the in-flight
    slot after the lock timeout: appends that arrive meanwhile commit without waiting for it."""
    held, free = _stream(), _stream()
    holder: asyncpg.Connection = await connect(app_database_url, schema=schema)
    try:
        tx = holder.transaction()
        await tx.start()
        await store.append(held, _events("holder"), expected_version=NO_STREAM, conn=holder)
        blocked = asyncio.ensure_future(
            store.append(held, _events("blocked"), expected_version=NO_STREAM)
        )
        await asyncio.sleep(0)  # it goes first, alone, and waits on the holder's row
        try:
            free_result = await asyncio.wait_for(
                store.append(free, _events("free"), expected_version=NO_STREAM), TIMEOUT
            )
            assert free_result.stream_versions == (0,)
            assert not blocked.done()
        finally:
            await tx.rollback()
        # The holder rolled back: the blocked append, alone now, goes through.
        assert (await asyncio.wait_for(blocked, TIMEOUT)).stream_versions == (0,)
    finally:
        await holder.close()
    assert [e.event_id for e in await store.read_stream(held)] != []


async def test_appends_together_in_a_transaction_land_all_or_none(store: EventStore) -> None:
    """`append_together`: several streams' appends in the caller's transaction in one
    statement. When one would not land (a stale expected version, an event id stored
    already, one stream twice) none does and the caller's transaction goes on; outside a
    transaction it refuses."""
    a, b, c = _stream(), _stream(), _stream()
    first_b = _events("b")
    await store.append(b, first_b, expected_version=NO_STREAM)
    async with store.pool.acquire() as conn:
        with pytest.raises(ValueError, match="transaction"):
            await store.append_together([(a, _events("a"), NO_STREAM)], conn=conn)
        async with conn.transaction():
            stale = [(a, _events("a"), NO_STREAM), (b, _events("b2"), NO_STREAM)]
            assert await store.append_together(stale, conn=conn) is None
            retried = [(a, _events("a"), NO_STREAM), (c, first_b, NO_STREAM)]
            assert await store.append_together(retried, conn=conn) is None
            twice = [(a, _events("a"), NO_STREAM), (a, _events("a2"), None)]
            assert await store.append_together(twice, conn=conn) is None
            assert await store.read_stream(a, conn=conn) == []  # nothing of them stayed
            landed = await store.append_together(
                [(a, _events("a", 2), NO_STREAM), (b, _events("b3"), 0), (c, _events("c"), None)],
                conn=conn,
            )
            assert landed is not None
            assert [r.stream_versions for r in landed] == [(0, 1), (1,), (0,)]
    assert [len(await store.read_stream(s)) for s in (a, b, c)] == [2, 2, 1]
    positions = [p for r in landed for p in r.global_positions]
    assert positions == sorted(positions)


def _loops_of_scans(plan: dict[str, Any]) -> dict[str, int]:
    """How often each function scan (an `unnest` of the statement's arrays) of `plan` ran."""
    loops = {}
    if plan["Node Type"] == "Function Scan":
        loops[plan["Alias"]] = plan["Actual Loops"]
    for child in plan.get("Plans", []):
        loops |= _loops_of_scans(child)
    return loops


@pytest.mark.parametrize("statement", ["APPEND_GROUP", "APPEND_GROUP_IN_TRANSACTION"])
@pytest.mark.parametrize("plan_cache_mode", ["force_generic_plan", "force_custom_plan"])
async def test_a_group_statement_reads_its_arrays_once_whatever_the_group_size(
    store: EventStore, statement: str, plan_cache_mode: str
) -> None:
    """The cost of a group grows with its events, not with events x appends: each array is
    unnested once, under the plan a prepared statement runs (generic after five executions)
    as under a custom one. (Inlined, the appends' CTE put the events' unnest inside a loop
    over the appends.)"""
    from shared.eventlog import appending, statements

    requests = [
        appending.encode(store.registry, store.max_event_bytes, _stream(), _events("g", 3), None)
        for _ in range(8)
    ]
    args = appending.group_args(requests)
    if statement == "APPEND_GROUP":
        args += ("50ms",)
    async with store.pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await conn.execute(f"SET LOCAL plan_cache_mode = {plan_cache_mode}")
            explained = await conn.fetchval(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + getattr(statements, statement), *args
            )
        finally:
            await transaction.rollback()  # EXPLAIN ANALYZE ran the insert: none of it stays
    [plan] = json.loads(explained)
    loops = _loops_of_scans(plan["Plan"])
    assert {"a", "e"} <= loops.keys(), loops
    assert loops == dict.fromkeys(loops, 1), f"an unnest ran more than once: {loops}"
