"""Fenced leases (`shared.leases`) and their claim loop (`shared.scheduling`): one suite run
against every service's lease table."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from services.analysis.leases import Leases as AnalysisLeases
from services.executor.leases import Leases as ExecutorLeases
from shared.errors import ConcurrencyConflict
from shared.eventlog import NO_STREAM, EventStore, new_events
from shared.events import vocabulary
from shared.events.base import Event
from shared.events.catalog import (
    AnalysisConcluded,
    AnalysisMeasured,
    DeploymentCancelRequested,
    DeploymentCompleted,
)
from shared.leases import FencedLeases, LeaseLost, LeaseTable
from shared.logs import get_logger
from shared.scheduling import LeaseScheduler
from shared.testing import wait_until


@dataclass(frozen=True)
class Kind:
    """One service's lease table, and what the suite needs to know about it."""

    name: str
    make: Callable[[EventStore, str, float], FencedLeases[Any]]
    register: Callable[[asyncpg.Connection, str], Awaitable[None]]
    table: str
    key: str
    stream: str  # the stream category of the work the lease is on
    event: Callable[[str], Event]  # an event that leaves the work open
    closing: Callable[[str], Event]  # the event that closes the work's lease


async def _register_deployment(conn: asyncpg.Connection, key: str) -> None:
    await ExecutorLeases.register(conn, key, "app")


async def _register_analysis(conn: asyncpg.Connection, key: str) -> None:
    await AnalysisLeases.register(conn, key, "d1", "app", "s1")


KINDS = [
    Kind(
        name="executor",
        make=lambda store, holder, ttl_s: ExecutorLeases(store, holder, ttl_s=ttl_s),
        register=_register_deployment,
        table="executor_leases",
        key="deployment_id",
        stream="deployment",
        event=lambda key: DeploymentCancelRequested(deployment_id=key),
        closing=lambda key: DeploymentCompleted(
            deployment_id=key, application_id="app", status=vocabulary.DeploymentStatus("SUCCESS")
        ),
    ),
    Kind(
        name="analysis",
        make=lambda store, holder, ttl_s: AnalysisLeases(store, holder, ttl_s=ttl_s),
        register=_register_analysis,
        table="analysis_leases",
        key="analysis_id",
        stream="analysis",
        event=lambda key: AnalysisMeasured(analysis_id=key, check="c", tick=1),
        closing=lambda key: AnalysisConcluded(
            analysis_id=key,
            deployment_id="d1",
            stage_id="s1",
            verdict=vocabulary.Verdict("success"),
        ),
    ),
]


@pytest.fixture(params=KINDS, ids=[k.name for k in KINDS])
def kind(request: pytest.FixtureRequest) -> Kind:
    value: Kind = request.param
    return value


async def register(store: EventStore, kind: Kind, *keys: str) -> None:
    async with store.pool.acquire() as conn:
        for key in keys:
            await kind.register(conn, key)


async def expire(store: EventStore, kind: Kind, key: str) -> None:
    await store.pool.execute(
        f"UPDATE {kind.table} SET expires_at = clock_timestamp() - interval '1 second' "
        f"WHERE {kind.key} = $1",
        key,
    )


async def expires_at(store: EventStore, kind: Kind, key: str) -> Any:
    return await store.pool.fetchval(
        f"SELECT expires_at FROM {kind.table} WHERE {kind.key} = $1", key
    )


def test_a_lease_table_takes_only_plain_identifiers() -> None:
    """Names go into the SQL text, so anything but a plain identifier is refused at once."""
    with pytest.raises(ValueError, match="not a plain SQL identifier"):
        LeaseTable(table="t; DROP TABLE events", key="id", closed_at="done_at", noun="thing")


async def test_claims_split_open_rows_between_replicas(store: EventStore, kind: Kind) -> None:
    """Two replicas claiming together split the open rows, oldest first; none is taken twice."""
    await register(store, kind, "k1", "k2", "k3")
    a, b = kind.make(store, "a", 30), kind.make(store, "b", 30)
    first = await a.claim(2)
    second = await b.claim(5)
    assert [x.key for x in first] == ["k1", "k2"]
    assert [x.key for x in second] == ["k3"]
    assert await a.claim(5, running=["k1", "k2"]) == []
    assert {(x.holder, x.token) for x in first} == {("a", 1)}


async def test_a_stale_holder_is_fenced_out(store: EventStore, kind: Kind) -> None:
    """After a takeover (token + 1) the old holder can neither renew nor append."""
    await register(store, kind, "k1")
    stream = f"{kind.stream}-k1"
    a, b = kind.make(store, "a", 30), kind.make(store, "b", 30)
    [old] = await a.claim(1)
    await a.append_fenced(old, stream, new_events([kind.event("k1")]), expected_version=NO_STREAM)
    await expire(store, kind, "k1")
    with pytest.raises(LeaseLost, match="no longer held by a"):  # expired, not yet taken
        await a.append_fenced(old, stream, new_events([kind.event("k1")]), expected_version=0)
    [new] = await b.claim(1)
    assert (new.holder, new.token) == ("b", old.token + 1)
    assert not await a.renew(old)
    with pytest.raises(LeaseLost):
        await a.append_fenced(old, stream, new_events([kind.event("k1")]), expected_version=0)
    assert await store.stream_version(stream) == 0
    await b.append_fenced(new, stream, new_events([kind.event("k1")]), expected_version=0)
    with pytest.raises(ConcurrencyConflict):  # the holder's folded version is stale
        await b.append_fenced(new, stream, new_events([kind.event("k1")]), expected_version=0)


async def test_the_closing_event_closes_the_row(store: EventStore, kind: Kind) -> None:
    """The service's closing event ends the lease in its append; a release frees a row at once."""
    await register(store, kind, "k1", "k2")
    a, b = kind.make(store, "a", 30), kind.make(store, "b", 30)
    one, two = await a.claim(2)
    await a.append_fenced(
        one, f"{kind.stream}-k1", new_events([kind.closing("k1")]), expected_version=NO_STREAM
    )
    assert await a.open_count() == 1
    assert not await a.renew(one)
    await a.release(two)
    assert [x.key for x in await b.claim(5)] == ["k2"]


async def test_a_held_lease_is_renewed_and_released(store: EventStore, kind: Kind) -> None:
    """While held the lease is pushed forward; leaving unfinished releases it for others."""
    await register(store, kind, "k1")
    a, b = kind.make(store, "a", 1.5), kind.make(store, "b", 30)
    [lease] = await a.claim(1)
    claimed_until = await expires_at(store, kind, "k1")
    stop, lost = asyncio.Event(), asyncio.Event()
    async with a.held(lease, stop=stop, lost=lost, finished=lambda: False):
        await wait_until(lambda: _later(store, kind, claimed_until), within_s=30, what="a renewal")
        assert await b.claim(1) == []
    assert not lost.is_set()
    assert [x.key for x in await b.claim(1)] == ["k1"]


async def test_a_finished_lease_is_not_released(store: EventStore, kind: Kind) -> None:
    """Leaving with the work finished keeps the holder (its closing append already ended it)."""
    await register(store, kind, "k1")
    a, b = kind.make(store, "a", 30), kind.make(store, "b", 30)
    [lease] = await a.claim(1)
    async with a.held(lease, stop=asyncio.Event(), lost=asyncio.Event(), finished=lambda: True):
        pass
    assert await b.claim(1) == []


async def test_a_takeover_sets_lost_while_held(store: EventStore, kind: Kind) -> None:
    """The renewal notices another holder took the row and says the lease is lost."""
    await register(store, kind, "k1")
    a = kind.make(store, "a", 1.0)
    [lease] = await a.claim(1)
    stop, lost = asyncio.Event(), asyncio.Event()
    async with a.held(lease, stop=stop, lost=lost, finished=lambda: False):
        await store.pool.execute(
            f"UPDATE {kind.table} SET holder = 'b', token = token + 1 WHERE {kind.key} = 'k1'"
        )
        await wait_until(lost.is_set, within_s=30, what="the lease lost")
    row = await store.pool.fetchrow(f"SELECT holder, token FROM {kind.table}")
    assert (row["holder"], row["token"]) == ("b", lease.token + 1)  # the new holder keeps it


async def _later(store: EventStore, kind: Kind, than: Any) -> bool:
    value = await expires_at(store, kind, "k1")
    return bool(value > than)


async def test_the_scheduler_runs_at_most_max_concurrent_and_ends_a_burst(
    store: EventStore, kind: Kind
) -> None:
    """The scheduler runs every open row once, oldest first, never more than its limit at once."""
    keys = [f"k{i}" for i in range(1, 6)]
    await register(store, kind, *keys)
    leases = kind.make(store, "a", 30)
    running: set[str] = set()
    most = 0
    forgotten: list[str] = []

    async def work(lease: Any, _stop: asyncio.Event) -> None:
        nonlocal most
        running.add(lease.key)
        most = max(most, len(running))
        await asyncio.sleep(0.05)  # the task's work: long enough for the limit to bite
        running.discard(lease.key)
        closing = new_events([kind.closing(lease.key)])
        await leases.append_fenced(
            lease, f"{kind.stream}-{lease.key}", closing, expected_version=NO_STREAM
        )

    scheduler = LeaseScheduler(
        leases,
        start=work,
        forget=forgotten.append,
        claim_interval_s=0.2,
        max_concurrent=2,
        log=get_logger("tests.scheduling"),
    )
    await asyncio.wait_for(scheduler.run(asyncio.Event(), burst=True), 30)
    assert scheduler.ran == keys
    assert sorted(forgotten) == keys
    assert most == 2
    assert await leases.open_count() == 0


async def test_the_scheduler_retakes_a_crashed_row_and_waits_for_its_tasks_on_stop(
    store: EventStore, kind: Kind
) -> None:
    """A task that crashes leaves its row open, to be claimed again; `stop` waits for the tasks."""
    await register(store, kind, "k1")
    leases = kind.make(store, "a", 30)
    stop, wound_up = asyncio.Event(), asyncio.Event()
    attempts: list[int] = []
    finished: list[str] = []

    async def work(lease: Any, stop: asyncio.Event) -> None:
        attempts.append(lease.token)
        if len(attempts) == 1:
            raise RuntimeError("the runner broke")
        await stop.wait()
        await wound_up.wait()  # still working after `stop`: the scheduler must wait
        finished.append(lease.key)

    scheduler = LeaseScheduler(
        leases,
        start=work,
        claim_interval_s=0.2,
        max_concurrent=4,
        log=get_logger("tests.scheduling"),
    )
    scheduling = asyncio.create_task(scheduler.run(stop))
    await wait_until(lambda: len(attempts) == 2, within_s=30, what="the row taken again")
    stop.set()
    await asyncio.sleep(1.0)  # several claim intervals: time enough to notice `stop`
    assert not scheduling.done()
    wound_up.set()
    await asyncio.wait_for(scheduling, 30)
    assert finished == ["k1"]
    assert scheduler.ran == ["k1", "k1"]
    assert attempts == [1, 2]  # each claim is a new fencing token
