"""The event log benchmark: appends, relay, end-to-end latency and replay, side by side.

`python -m benchmarks.eventlog --json` starts one nats-server and one durable
PostgreSQL (fsync on), measures everything against them in one run, and
prints one JSON object; without `--json` it prints a table. Slipway's figures
stand next to the raw asyncpg limit and the `eventsourcing` library, because
absolute figures on a shared machine are noise (DESIGN §13). Each measurement
has a schema (and NATS subjects) of its own. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import platform
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from time import perf_counter, process_time
from typing import Any

import asyncpg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from benchmarks._machine import busy_cores_before, machine_busy_seconds
from benchmarks._report import percentile, print_groups, print_report, progress, quiet_logging
from benchmarks._servers import Servers, WalFlushes, running_servers
from services.relay.relay import Relay
from shared.consumer import EventConsumer
from shared.db import connect, create_pool
from shared.eventlog import NO_STREAM, EventStore, new_events
from shared.events import vocabulary
from shared.events.base import Event, RecordedEvent
from shared.events.catalog import (
    ApplicationDisabled,
    ApplicationRegistered,
    DeploymentTriggered,
    default_registry,
)
from shared.ids import new_event_id
from shared.messaging import ensure_event_stream
from shared.projections import Projection, replay
from shared.projections.applications import ApplicationsProjection
from shared.projections.stream_stats import StreamStatsProjection
from shared.subjects import Subjects

WRITERS = 8  # connections (or threads) for the one-event-per-transaction figures
MANY_WRITERS = 64  # coroutines sharing the same 8-connection pool, as a busy service's handlers
BATCH = 100  # events per call for the batch figures
BATCH_WRITERS = 2  # connections for the batch figures (Slipway and raw alike)
WARMUP_S = 1.0  # excluded from each closed-loop figure: connections, prepared statements
WINDOW_S = 4.0  # the measured part of each closed-loop figure

BULK_STREAM_EVENTS = 500  # events per append when preloading the relay's and replay's logs
BULK_WRITERS = 2
RELAY_EVENTS = 60_000
REPLAY_EVENTS = 200_000
REPLAY_BATCH = 5000  # `slipway replay`'s default (`--batch-size`)

LATENCY_RATE = 1000  # appends/s offered, each started on time whatever the others do
LATENCY_SECONDS = 5.0

E2E_RATE = 1000  # events/s
E2E_WRITERS = 10  # each appends one event every E2E_WRITERS / E2E_RATE seconds
E2E_SECONDS = 10.0
E2E_WARMUP_S = 0.2  # enough to open connections and prepare statements
E2E_DRAIN_S = 20.0  # after the last append; keeps the run bounded

# The plain table of the raw limit: the event log's columns, a primary key, nothing else.
_RAW_TABLE = """
CREATE TABLE events (
  global_position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tx_id           xid8 DEFAULT pg_current_xact_id(),
  stream_id       text,
  stream_version  bigint,
  event_id        uuid,
  event_type      text,
  schema_version  smallint,
  payload         bytea,
  metadata        jsonb,
  recorded_at     timestamptz DEFAULT clock_timestamp()
)
"""
_RAW_INSERT = """
INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version,
                    payload, metadata)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""
# The same rows, a whole group in one statement (no version check: not a store).
_RAW_GROUP_INSERT = """
INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version,
                    payload, metadata)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::int2[],
                     $6::bytea[], $7::jsonb[])
"""


# ----------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class Sample:
    """A moment: the wall clock and CPU seconds used so far, by whom."""

    wall: float
    python: float  # this process
    postgres: float  # the server and all its backends
    nats: float
    machine: float  # every process, other tenants of the machine included

    @classmethod
    def now(cls, servers: Servers) -> Sample:
        """The clocks now: this process's CPU, the servers' and the machine's."""
        postgres, nats = servers.cpu_seconds()
        return cls(perf_counter(), process_time(), postgres, nats, machine_busy_seconds())


@dataclass(frozen=True)
class Span:
    """What happened between two samples; cores are CPU seconds per second (1.0 = one core)."""

    seconds: float
    cores: dict[str, float]  # python (clients, relay, consumer, peer threads), postgres, …
    wal_flushes: WalFlushes | None = None  # PostgreSQL's WAL flushes (fsyncs), where counted

    @classmethod
    def between(cls, start: Sample, end: Sample) -> Span:
        """The wall time and cores used between `start` and `end`."""
        seconds = end.wall - start.wall
        used = {
            who: (getattr(end, who) - getattr(start, who)) / seconds
            for who in ("python", "postgres", "nats", "machine")
        }
        return cls(seconds, used)

    def details(self, prefix: str) -> dict[str, float]:
        """The cores used, as report details named `<prefix>_<who>_cores`."""
        details = {f"{prefix}_{who}_cores": cores for who, cores in self.cores.items()}
        if self.wal_flushes is not None:
            flushes = self.wal_flushes
            details[f"{prefix}_wal_flushes_per_s"] = flushes.count / self.seconds
            if flushes.seconds > 0:  # timed (`--wal-timing`)
                # The mean time of one flush: the floor of a durable commit's latency.
                details[f"{prefix}_wal_flush_ms"] = 1000 * flushes.seconds / max(flushes.count, 1)
        return details

    def per_flush(self, prefix: str, events: float) -> dict[str, float]:
        """`details` and `<prefix>_per_flush`: events committed per WAL flush."""
        flushes = self.wal_flushes.count if self.wal_flushes else 0
        return self.details(prefix) | {f"{prefix}_per_flush": events / max(flushes, 1)}


@contextlib.contextmanager
def timed(servers: Servers) -> Iterator[Callable[[], Span]]:
    """The span since the block began, each time the yielded function is called."""
    start = Sample.now(servers)
    yield lambda: Span.between(start, Sample.now(servers))


Step = Callable[[int], Awaitable[int]]
"""One call by writer `w`; returns how many events it wrote."""


async def _windowed_rate(
    servers: Servers,
    workers: Sequence[asyncio.Future[None]],
    counts: list[int],
    stop: threading.Event,
) -> tuple[float, Span]:
    """Events/s that `workers` (each adding to its slot of `counts`) sustain after a warm-up."""
    try:
        async with servers.wal_flush_counter() as wal_flushes:
            await asyncio.wait(workers, timeout=WARMUP_S, return_when=asyncio.FIRST_COMPLETED)
            before, start, flushes = sum(counts), Sample.now(servers), await wal_flushes()
            await asyncio.wait(workers, timeout=WINDOW_S, return_when=asyncio.FIRST_COMPLETED)
            after, span = sum(counts), Span.between(start, Sample.now(servers))
            span = dataclasses.replace(span, wal_flushes=await wal_flushes() - flushes)
    finally:
        stop.set()
        # Re-raises the first failure of any writer (they only end early by failing).
        await asyncio.gather(*workers)
    return (after - before) / span.seconds, span


async def closed_loop(servers: Servers, step: Step, *, writers: int) -> tuple[float, Span]:
    """Events/s of `writers` coroutines calling `step` back to back."""
    counts, stop = [0] * writers, threading.Event()

    async def writer(w: int) -> None:
        while not stop.is_set():
            counts[w] += await step(w)

    return await _windowed_rate(
        servers, [asyncio.ensure_future(writer(w)) for w in range(writers)], counts, stop
    )


async def threaded_closed_loop(
    servers: Servers, step: Callable[[int], int], *, writers: int
) -> tuple[float, Span]:
    """Events/s of `writers` threads calling `step` back to back (for blocking peers)."""
    counts, stop = [0] * writers, threading.Event()

    def writer(w: int) -> None:
        while not stop.is_set():
            counts[w] += step(w)

    with ThreadPoolExecutor(writers) as pool:
        futures = [asyncio.wrap_future(pool.submit(writer, w)) for w in range(writers)]
        return await _windowed_rate(servers, futures, counts, stop)


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll `condition` every 2 ms; callers bound the wait with `asyncio.timeout`."""
    # Polling, not an Event: the conditions read counters of shared code (relay.published).
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.002)


@contextlib.asynccontextmanager
async def running(*loops: Callable[[asyncio.Event], Awaitable[None]]) -> AsyncIterator[None]:
    """Run `loops` (relay, consumer) in the background for the block, then stop them."""
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(run(stop)) for run in loops]
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)


# ----------------------------------------------------------------------------- workload


def stream_events(application_id: str, first_version: int, count: int) -> list[Event]:
    """Events for versions `first_version`… of an application's stream: registered, deployed…"""
    return [
        ApplicationRegistered(
            application_id=application_id,
            name=application_id,
            repository_id="repo-1",
            path=f"apps/{application_id}",
        )
        if version == 0
        else DeploymentTriggered(
            deployment_id=f"{application_id}-{version}",
            application_id=application_id,
            trigger=vocabulary.Trigger("on_commit"),
            commit_hash="3f786850e387550fdab836ed7e6dc881de23001b",
            commit_author="bench",
            commit_message="bump image to v1.2.3",
        )
        for version in range(first_version, first_version + count)
    ]


def slipway_appender(
    store: EventStore,
    *,
    per_call: int,
    label: str,
    conns: Sequence[asyncpg.Connection] | None = None,
) -> Step:
    """Each writer appends `per_call` events to a stream of its own, tracking its version.

    With `conns`, writer w appends on `conns[w]` (as a consumer's handler does on the
    connection it holds) instead of checking a connection out of the pool per call.
    """
    versions: dict[int, int] = {}

    async def step(w: int) -> int:
        application_id = f"{label}{w}"
        version = versions.get(w, NO_STREAM)
        events = new_events(stream_events(application_id, version + 1, per_call))
        result = await store.append(
            f"application-{application_id}",
            events,
            expected_version=version,
            conn=None if conns is None else conns[w],
        )
        versions[w] = result.next_expected_version
        return per_call

    return step


def raw_grouper(
    conns: Sequence[asyncpg.Connection],
) -> tuple[Step, list[Callable[[asyncio.Event], Awaitable[None]]]]:
    """Group commit as bare as Python makes it: each call queues `raw_inserter`'s row and
    waits; a flusher (the second value: one per connection, run beside the writers) inserts
    whatever its writers queued in one statement and wakes them. No version check, no
    per-stream order, no encoding, no pool: the ceiling a group commit in one Python process
    reaches here. With two connections the writers are two fixed cohorts (writer w on
    flusher w mod 2), so one cohort's Python runs while the other's group is in the server:
    pipelined groups, without the store's dispatching."""
    event_type, schema_version, payload = default_registry().encode(stream_events("raw", 1, 1)[0])
    versions = [0] * WRITERS
    queues: list[list[tuple[tuple[object, ...], asyncio.Future[None]]]] = [[] for _ in conns]
    arrivals = [asyncio.Event() for _ in conns]

    async def step(w: int) -> int:
        version, versions[w] = versions[w], versions[w] + 1
        row = (f"application-raw{w}", version, new_event_id(), event_type, schema_version)
        done = asyncio.get_running_loop().create_future()
        queues[w % len(conns)].append(((*row, payload, "{}"), done))
        arrivals[w % len(conns)].set()
        await done
        return 1

    def flusher(k: int) -> Callable[[asyncio.Event], Awaitable[None]]:
        queued, arrived = queues[k], arrivals[k]

        async def flush(stop: asyncio.Event) -> None:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):  # to see `stop` when nothing comes
                        await arrived.wait()
                arrived.clear()
                # As the store's group commit: one loop turn for the writers coming back.
                await asyncio.sleep(0)
                group = queued[:]
                queued.clear()
                if group:
                    rows = zip(*(row for row, _ in group), strict=True)
                    await conns[k].execute(_RAW_GROUP_INSERT, *rows)
                    for _, done in group:
                        done.set_result(None)

        return flush

    return step, [flusher(k) for k in range(len(conns))]


def raw_inserter(conns: Sequence[asyncpg.Connection], *, per_call: int) -> Step:
    """The same rows as `slipway_appender` writes, one INSERT (or `executemany`) per call."""
    event_type, schema_version, payload = default_registry().encode(stream_events("raw", 1, 1)[0])
    versions = [0] * len(conns)

    async def step(w: int) -> int:
        first, versions[w] = versions[w], versions[w] + per_call
        rows = [
            (f"application-raw{w}", v, new_event_id(), event_type, schema_version, payload, "{}")
            for v in range(first, first + per_call)
        ]
        if per_call == 1:
            await conns[w].execute(_RAW_INSERT, *rows[0])
        else:
            await conns[w].executemany(_RAW_INSERT, rows)
        return per_call

    return step


async def bulk_load(store: EventStore, total: int) -> None:
    """Preload `total` events quickly: batch appends of whole new streams."""
    calls = iter(range(total // BULK_STREAM_EVENTS))

    async def writer() -> None:
        for n in calls:
            # Registered, deployed many times, disabled: every projection has work to do.
            events = stream_events(f"bulk{n}", 0, BULK_STREAM_EVENTS - 1)
            events.append(ApplicationDisabled(application_id=f"bulk{n}"))
            await store.append(
                f"application-bulk{n}", new_events(events), expected_version=NO_STREAM
            )

    await asyncio.gather(*(writer() for _ in range(BULK_WRITERS)))


@contextlib.asynccontextmanager
async def slipway_store(servers: Servers, schema: str, size: int) -> AsyncIterator[EventStore]:
    """An EventStore on a freshly migrated schema, as the application role."""
    await servers.migrated_schema(schema)
    pool = await create_pool(servers.app_url, schema=schema, min_size=size, max_size=size)
    try:
        yield EventStore(pool, default_registry())
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def raw_connections(
    servers: Servers, schema: str, size: int
) -> AsyncIterator[list[asyncpg.Connection]]:
    """`size` plain asyncpg connections to a one-table schema, for the raw baselines."""
    await servers.plain_schema(schema, _RAW_TABLE)
    conns = [await connect(servers.admin_url, schema=schema) for _ in range(size)]
    try:
        yield conns
    finally:
        for conn in conns:
            await conn.close()


# ----------------------------------------------------------------------------- measurements


@dataclass
class Measured:
    """One measurement's headline figures and its details (cores, group counts)."""

    figures: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)


async def measure_append_single(servers: Servers) -> Measured:
    """`append_single_8conc_per_s`: one-event appends from 8 writers, with group commit."""
    async with slipway_store(servers, "bench_append_single", WRITERS) as store:
        rate, span = await closed_loop(
            servers, slipway_appender(store, per_call=1, label="single"), writers=WRITERS
        )
    details = span.per_flush("append_single", rate * span.seconds) | {
        "append_single_groups": store.group_commit.groups
    }
    return Measured({"append_single_8conc_per_s": rate}, details)


async def measure_append_one(servers: Servers) -> Measured:
    """One writer: nothing else is ever in flight, so every append goes at once, alone."""
    async with slipway_store(servers, "bench_append_one", WRITERS) as store:
        rate, span = await closed_loop(
            servers, slipway_appender(store, per_call=1, label="one"), writers=1
        )
    details = span.per_flush("append_one", rate * span.seconds) | {
        "append_one_groups": store.group_commit.groups
    }
    return Measured(
        {"append_single_1conc_per_s": rate, "append_single_1conc_mean_ms": 1000 / rate}, details
    )


async def measure_append_many(servers: Servers) -> Measured:
    """One-event appends from 64 coroutines sharing 8 connections, as a busy service."""
    async with slipway_store(servers, "bench_append_many", WRITERS) as store:
        rate, span = await closed_loop(
            servers, slipway_appender(store, per_call=1, label="many"), writers=MANY_WRITERS
        )
    details = span.per_flush("append_many", rate * span.seconds) | {
        "append_many_groups": store.group_commit.groups
    }
    return Measured({f"append_single_{MANY_WRITERS}conc_per_s": rate}, details)


async def measure_append_latency(servers: Servers) -> Measured:
    """Append call latency at LATENCY_RATE appends/s offered (open loop), from each append's
    scheduled start, so that a stall delays the appends queued behind it in the figure too."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    # Each latency's two parts: how late this process started the append (the event loop
    # or the whole process held up: scheduling, not the store) and the call itself.
    start_lags: list[float] = []
    calls: list[float] = []

    async def one(k: int, due: float, label: str = "lat") -> None:
        called = loop.time()
        [new] = new_events(stream_events(f"{label}{k}", 0, 1))
        await store.append(f"application-{label}{k}", [new], expected_version=NO_STREAM)
        latencies.append(loop.time() - due)
        start_lags.append(called - due)
        calls.append(loop.time() - called)

    async with slipway_store(servers, "bench_append_latency", WRITERS) as store:
        # Warm up: open the pool's connections and prepare the statements.
        await asyncio.gather(*(one(k, loop.time(), "warm") for k in range(WRITERS * 2)))
        for samples in (latencies, start_lags, calls):
            samples.clear()
        store.group_commit.largest_group = 0
        count = round(LATENCY_RATE * LATENCY_SECONDS)
        appends: list[asyncio.Task[None]] = []
        async with servers.wal_flush_counter() as wal_flushes:
            flushes = await wal_flushes()
            start = loop.time()
            with timed(servers) as elapsed:
                # Each append is started at its time, not all created up front: creating
                # thousands of sleeping tasks at once took longer than the head start on a
                # busy machine, and the first few hundred appends counted that as latency.
                for k in range(count):
                    due = start + k / LATENCY_RATE
                    await asyncio.sleep(due - loop.time())
                    appends.append(asyncio.ensure_future(one(k, due)))
                await asyncio.gather(*appends)
                span = elapsed()
            span = dataclasses.replace(span, wal_flushes=await wal_flushes() - flushes)
    return Measured(
        {"append_single_p99_ms": percentile_ms(latencies, 99)},
        {
            "append_latency_p50_ms": percentile_ms(latencies, 50),
            "append_latency_max_ms": max(latencies) * 1000,
            "append_latency_start_lag_p99_ms": percentile_ms(start_lags, 99),
            "append_latency_call_p99_ms": percentile_ms(calls, 99),
            "append_latency_appends": count,
            "append_latency_groups": store.group_commit.groups,
            "append_latency_largest_group": store.group_commit.largest_group,
            **span.details("append_latency"),
        },
    )


async def measure_append_single_held(servers: Servers) -> Measured:
    """One-event appends from 8 writers each holding its own connection."""
    async with slipway_store(servers, "bench_append_held", WRITERS) as store:
        conns = [await store.pool.acquire() for _ in range(WRITERS)]
        try:
            rate, span = await closed_loop(
                servers,
                slipway_appender(store, per_call=1, label="held", conns=conns),
                writers=WRITERS,
            )
        finally:
            for conn in conns:
                await store.pool.release(conn)
    return Measured(
        {"append_single_8conc_held_conn_per_s": rate}, span.details("append_single_held")
    )


async def measure_append_batch(servers: Servers) -> Measured:
    """`append_batch_per_s`: appends of 100 events per call from 2 writers."""
    async with slipway_store(servers, "bench_append_batch", BATCH_WRITERS) as store:
        rate, span = await closed_loop(
            servers, slipway_appender(store, per_call=BATCH, label="batch"), writers=BATCH_WRITERS
        )
    return Measured(
        {"append_batch_per_s": rate},
        span.details("append_batch")
        | {"append_batch_alone": store.group_commit.heavy_alone, "append_batch_per_call": BATCH},
    )


async def measure_raw_single(servers: Servers) -> Measured:
    """`raw_single_8conc_per_s`: the baseline, one-row transactions on 8 raw connections."""
    async with raw_connections(servers, "bench_raw_single", WRITERS) as conns:
        rate, span = await closed_loop(servers, raw_inserter(conns, per_call=1), writers=WRITERS)
    return Measured(
        {"raw_single_8conc_per_s": rate}, span.per_flush("raw_single", rate * span.seconds)
    )


async def measure_raw_group(servers: Servers) -> Measured:
    """`raw_group_8conc_per_s`: raw_single's rows from 8 writers, grouped by `raw_grouper`."""
    async with raw_connections(servers, "bench_raw_group", 1) as conns:
        return await _raw_grouped(servers, conns, "raw_group")


async def measure_raw_group_pipelined(servers: Servers) -> Measured:
    """`raw_group_pipelined_8conc_per_s`: the same in two cohorts on two connections."""
    async with raw_connections(servers, "bench_raw_group_pipelined", 2) as conns:
        return await _raw_grouped(servers, conns, "raw_group_pipelined")


async def measure_raw_group_log(servers: Servers) -> Measured:
    """`raw_group_log_8conc_per_s`: the same, into the event log's own table (its indexes)."""
    schema = await servers.migrated_schema("bench_raw_group_log")
    conn = await connect(servers.app_url, schema=schema)
    try:
        return await _raw_grouped(servers, [conn], "raw_group_log")
    finally:
        await conn.close()


async def _raw_grouped(
    servers: Servers, conns: Sequence[asyncpg.Connection], name: str
) -> Measured:
    step, flushers = raw_grouper(conns)
    async with running(*flushers):
        rate, span = await closed_loop(servers, step, writers=WRITERS)
    return Measured({f"{name}_8conc_per_s": rate}, span.per_flush(name, rate * span.seconds))


async def measure_raw_executemany(servers: Servers) -> Measured:
    """`raw_executemany_per_s`: the baseline for batches, executemany of 100 rows."""
    async with raw_connections(servers, "bench_raw_batch", BATCH_WRITERS) as conns:
        rate, span = await closed_loop(
            servers, raw_inserter(conns, per_call=BATCH), writers=BATCH_WRITERS
        )
    return Measured({"raw_executemany_per_s": rate}, span.details("raw_executemany"))


class Probe(Aggregate):
    """The smallest aggregate: one `Created` event, saved once."""

    @event("Created")
    def __init__(self, writer: int) -> None:
        self.writer = writer


async def measure_eventsourcing(servers: Servers) -> Measured:
    """`eventsourcing_8threads_per_s`: the peer library saving aggregates from 8 threads."""
    schema = await servers.plain_schema("bench_eventsourcing")
    # Configured through the Application's env, as the library's docs describe;
    # the server trusts local connections, so the password is only a placeholder.
    app: Application[uuid.UUID] = Application(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": "postgres",
            "POSTGRES_HOST": "127.0.0.1",
            "POSTGRES_PORT": str(servers.postgres.port),
            "POSTGRES_USER": "postgres",
            "POSTGRES_PASSWORD": "unused",
            "POSTGRES_SCHEMA": schema,
            "POSTGRES_POOL_SIZE": str(WRITERS),
        }
    )

    def step(w: int) -> int:
        app.save(Probe(w))
        return 1

    try:
        rate, span = await threaded_closed_loop(servers, step, writers=WRITERS)
    finally:
        app.close()
    return Measured(
        {"eventsourcing_8threads_per_s": rate},
        {
            "eventsourcing_version": metadata.version("eventsourcing"),
            **span.per_flush("eventsourcing", rate * span.seconds),
        },
    )


async def measure_relay(servers: Servers) -> Measured:
    """The relay's events per second from the log to JetStream, over a preloaded log."""
    async with (
        slipway_store(servers, "bench_relay", BULK_WRITERS) as store,
        servers.nats_client() as nc,
    ):
        with timed(servers) as loading:
            await bulk_load(store, RELAY_EVENTS)
        progress(f"  preloaded {RELAY_EVENTS} events in {loading().seconds:.1f}s")
        js, subjects = nc.jetstream(), Subjects("bench_relay")
        await ensure_event_stream(js, subjects)
        relay = Relay(database_url=servers.app_url, js=js, subjects=subjects, schema="bench_relay")
        with timed(servers) as elapsed:
            async with running(relay.run):
                async with asyncio.timeout(60):
                    await wait_until(lambda: relay.published >= RELAY_EVENTS)
                span = elapsed()
    return Measured(
        {"relay_per_s": relay.published / span.seconds},
        {
            "relay_events": relay.published,
            "relay_duplicates": relay.duplicates,
            "relay_batch_size": relay.batch_size,
            "relay_max_in_flight": relay.max_in_flight,
            **span.details("relay"),
        },
    )


async def paced_appends(
    store: EventStore, sent: dict[uuid.UUID, float], *, seconds: float, label: str
) -> tuple[int, float, list[float]]:
    """E2E_RATE events/s for `seconds`, from E2E_WRITERS staggered writers on streams of their own.

    Records each event's send time in `sent`; returns the events appended,
    the seconds it took and each append call's duration.
    """
    interval = E2E_WRITERS / E2E_RATE
    per_writer = round(seconds / interval)
    loop = asyncio.get_running_loop()
    start = loop.time()
    durations: list[float] = []

    async def writer(w: int) -> None:
        version = NO_STREAM
        for k in range(per_writer):
            await asyncio.sleep(start + (k + w / E2E_WRITERS) * interval - loop.time())
            [new] = new_events(stream_events(f"{label}{w}", version + 1, 1))
            sent[new.event_id] = begin = perf_counter()
            result = await store.append(f"application-{label}{w}", [new], expected_version=version)
            durations.append(perf_counter() - begin)
            version = result.next_expected_version

    await asyncio.gather(*(writer(w) for w in range(E2E_WRITERS)))
    return per_writer * E2E_WRITERS, loop.time() - start, durations


def percentile_ms(samples: Sequence[float], pct: int) -> float:
    """The `pct` percentile of `samples` (seconds), in milliseconds."""
    return percentile(samples, pct) * 1000


async def measure_e2e(servers: Servers) -> Measured:
    """Append-to-consumer latency: each event timed from its append to its handler."""
    sent: dict[uuid.UUID, float] = {}
    latencies: list[float] = []

    async def handler(recorded: RecordedEvent, _conn: asyncpg.Connection) -> None:
        now = perf_counter()
        if (begin := sent.pop(recorded.event_id, None)) is not None:
            latencies.append(now - begin)

    async with (
        slipway_store(servers, "bench_e2e", E2E_WRITERS + 2) as store,
        servers.nats_client() as nc,
    ):
        js, subjects = nc.jetstream(), Subjects("bench_e2e")
        await ensure_event_stream(js, subjects)
        relay = Relay(database_url=servers.app_url, js=js, subjects=subjects, schema="bench_e2e")
        consumer = EventConsumer(
            name="bench_e2e",
            js=js,
            pool=store.pool,
            registry=store.registry,
            subjects=subjects,
            handler=handler,
        )
        async with running(relay.run, consumer.run):
            await paced_appends(store, sent, seconds=E2E_WARMUP_S, label="warm")
            async with asyncio.timeout(30):
                await wait_until(lambda: not sent)
            latencies.clear()
            with timed(servers) as elapsed:
                appended, seconds, append_s = await paced_appends(
                    store, sent, seconds=E2E_SECONDS, label="e2e"
                )
                span = elapsed()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(E2E_DRAIN_S):
                    await wait_until(lambda: not sent)
            # Events not consumed by then count with the time they have waited so far:
            # the percentiles are then lower bounds, and `e2e_unconsumed` says so.
            unconsumed = [perf_counter() - begin for begin in sent.values()]
    latencies += unconsumed
    return Measured(
        {"e2e_p50_ms": percentile_ms(latencies, 50), "e2e_p99_ms": percentile_ms(latencies, 99)},
        {
            "e2e_events": appended,
            "e2e_rate_per_s": appended / seconds,
            "e2e_unconsumed": len(unconsumed),
            "e2e_max_ms": max(latencies) * 1000,
            "e2e_append_call_p50_ms": percentile_ms(append_s, 50),
            "e2e_append_call_p99_ms": percentile_ms(append_s, 99),
            **span.details("e2e"),
        },
    )


async def timed_replay(
    servers: Servers, store: EventStore, projection: Projection
) -> tuple[float, Span]:
    """Events/s of `slipway replay` rebuilding `projection` from position 0."""
    with timed(servers) as elapsed:
        result = await replay(store, projection, batch_size=REPLAY_BATCH)
        span = elapsed()
    if result.events != REPLAY_EVENTS:
        raise RuntimeError(f"replay folded {result.events} events, expected {REPLAY_EVENTS}")
    return result.events / span.seconds, span


async def measure_replay(servers: Servers) -> Measured:
    """Projection replay speed over a preloaded log, as `slipway replay` rebuilds."""
    async with slipway_store(servers, "bench_replay", BULK_WRITERS) as store:
        with timed(servers) as loading:
            await bulk_load(store, REPLAY_EVENTS)
        progress(f"  preloaded {REPLAY_EVENTS} events in {loading().seconds:.1f}s")
        # Replays run as the projector's role, as `slipway replay` does.
        projector_pool = await create_pool(
            servers.projector_url, schema="bench_replay", min_size=1, max_size=2
        )
        try:
            projector = EventStore(projector_pool, default_registry())
            stream_stats, span = await timed_replay(servers, projector, StreamStatsProjection())
            applications, _ = await timed_replay(servers, projector, ApplicationsProjection())
        finally:
            await projector_pool.close()
    return Measured(
        {"replay_per_s": stream_stats},
        {
            "replay_events": REPLAY_EVENTS,
            "replay_batch_size": REPLAY_BATCH,
            "replay_applications_per_s": applications,
            **span.details("replay"),
        },
    )


SECTIONS: dict[str, Callable[[Servers], Awaitable[Measured]]] = {
    "append_single": measure_append_single,
    "append_one": measure_append_one,
    "append_many": measure_append_many,
    "append_latency": measure_append_latency,
    "append_single_held": measure_append_single_held,
    "append_batch": measure_append_batch,
    "raw_single": measure_raw_single,
    "raw_group": measure_raw_group,
    "raw_group_log": measure_raw_group_log,
    "raw_group_pipelined": measure_raw_group_pipelined,
    "raw_executemany": measure_raw_executemany,
    "eventsourcing": measure_eventsourcing,
    "relay": measure_relay,
    "e2e": measure_e2e,
    "replay": measure_replay,
}

NOTES = {
    "append_single": f"{WRITERS} pool connections; each writer appends one event per call "
    "(its own autocommit transaction) to a stream of its own with expected_version tracked",
    "append_one": "append_single with one writer: the latency of an append with nothing "
    "else in flight (append_single_1conc_mean_ms = 1000 / the rate)",
    "append_many": f"append_single with {MANY_WRITERS} writers on the same {WRITERS}-connection "
    "pool: what group commit makes of many concurrent handlers in one service",
    "append_latency": f"{LATENCY_RATE} appends/s offered for {LATENCY_SECONDS:g}s, each "
    "started on schedule (open loop), each opening a stream of its own (NO_STREAM), "
    f"{WRITERS}-connection pool; latency from the scheduled start to "
    "the append's return; details.*_groups: group commits of two appends or more",
    "append_single_held": "the same, but each writer appends on a connection it holds "
    "(EventStore.append(conn=...)), as a consumer's handler does inside its transaction",
    "append_batch": f"{BATCH} events per EventStore.append call, one stream per writer "
    f"(expected_version tracked), {BATCH_WRITERS} writers; raw_executemany uses the same "
    "writer count and rows",
    "raw": "plain table with the log's columns and defaults, primary key only; one "
    "dedicated asyncpg connection per writer (no pool)",
    "raw_group": f"raw's rows from {WRITERS} writers, each queuing its row and waiting; one "
    "connection inserts whatever queued in one unnest INSERT (no version check, no per-stream "
    "order, rows built as raw's): the most any group commit in one Python process makes here; "
    "raw_group_log the same into the event log's table, with the indexes its reads need; "
    "raw_group_pipelined the same as two fixed cohorts of writers on two connections, one "
    "cohort's group in the server while the other's Python runs",
    "eventsourcing": f"eventsourcing.postgres via Application(env=...), {WRITERS} threads, "
    f"each iteration creates and saves a one-event Aggregate; pool size {WRITERS}; "
    "the library serialises writers with LOCK TABLE",
    "relay": f"{RELAY_EVENTS} events preloaded with batch appends, then a Relay from "
    "checkpoint zero timed until relay.published reaches them all (PubAcks awaited)",
    "e2e": f"{E2E_RATE} events/s for {E2E_SECONDS:g}s from {E2E_WRITERS} staggered "
    "single-event writers; Relay and the real EventConsumer (its defaults: one inbox "
    "transaction per fetched batch, then the batch's acks, not waited for) in this process; "
    "latency = just before append() "
    "to the handler call; "
    f"events still unconsumed {E2E_DRAIN_S:g}s after the last append count with the time "
    "waited so far (then the percentiles are lower bounds)",
    "replay": "shared.projections.replay of StreamStatsProjection (one upsert per "
    f"{REPLAY_BATCH}-event batch, every event counted) over {REPLAY_EVENTS} events; "
    "replay_applications_per_s is ApplicationsProjection (a statement per relevant event)",
    "cpu": "details.<section>_<who>_cores: CPU seconds per second during the measured "
    "window; python = this process (1.0 = one core, the event loop's ceiling), postgres = "
    "the server and its backends, nats = nats-server, machine = every process including "
    "other tenants (cpu_count is the ceiling); machine.busy_cores_before: load before the run",
    "all": "every figure measured in this run against one nats-server and one "
    "PostgreSQL (fsync on); Python clients, relay and consumer share this process",
}


def group_commit_bound(f: dict[str, float], details: dict[str, Any]) -> dict[str, float]:
    """What `append_single_8conc_per_s >= 2 x raw_single_8conc_per_s` asks of a group's round.

    Each of the WRITERS closed-loop writers has one append in flight, so one group holds
    them all and the rate is WRITERS / cycle, where the cycle (one group's whole round)
    is the WAL flush F plus everything else, the overhead O (statement, round trips,
    Python, waiting for a core). 2 x raw needs cycle <= WRITERS / (2 x raw): with the F
    measured, O may be at most `append_single_2x_raw_max_overhead_ms` (< 0: not even a
    group with no overhead at all would reach it).
    """
    if not {"append_single_8conc_per_s", "raw_single_8conc_per_s"} <= f.keys() or (
        "append_single_wal_flush_ms" not in details
    ):
        return {}
    flush_ms = details["append_single_wal_flush_ms"]
    cycle_ms = 1000 * WRITERS / f["append_single_8conc_per_s"]
    needed_ms = 1000 * WRITERS / (2 * f["raw_single_8conc_per_s"])
    return {
        "append_single_cycle_ms": cycle_ms,
        "append_single_overhead_ms": cycle_ms - flush_ms,
        "append_single_2x_raw_cycle_ms": needed_ms,
        "append_single_2x_raw_max_overhead_ms": needed_ms - flush_ms,
    }


def check_targets(f: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Each figure with a target, its goal and whether it was met."""
    goals = {
        "append_single_8conc_per_s": (
            ">= 15 x eventsourcing_8threads_per_s and >= 2 x raw_single_8conc_per_s",
            max(15 * f["eventsourcing_8threads_per_s"], 2 * f["raw_single_8conc_per_s"]),
        ),
        "append_batch_per_s": (">= 0.5 x raw_executemany_per_s", 0.5 * f["raw_executemany_per_s"]),
        "relay_per_s": (">= 10000", 10_000.0),
        "replay_per_s": (">= 50000", 50_000.0),
    }
    targets = {
        key: {
            "goal": goal,
            "threshold": round(limit, 1),
            "value": round(f[key], 1),
            "met": f[key] >= limit,
        }
        for key, (goal, limit) in goals.items()
    }
    targets["append_single_p99_ms"] = {
        "goal": f"<= 10 at {LATENCY_RATE} appends/s",
        "threshold": 10.0,
        "value": round(f["append_single_p99_ms"], 2),
        "met": f["append_single_p99_ms"] <= 10,
    }
    targets["e2e_p99_ms"] = {
        "goal": "<= 50",
        "threshold": 50.0,
        "value": round(f["e2e_p99_ms"], 2),
        "met": f["e2e_p99_ms"] <= 50,
    }
    return targets


async def run_all(
    servers: Servers, only: Sequence[str], *, wal_timing: bool = False
) -> dict[str, Any]:
    """Run the chosen measurements one after another; figures, details, durations."""
    if wal_timing:
        await servers.time_wal_flushes()
    figures: dict[str, float] = {}
    details: dict[str, Any] = {}
    durations: dict[str, float] = {}
    for name in only:
        progress(f"{name}…")
        with timed(servers) as elapsed:
            measured = await SECTIONS[name](servers)
            durations[name] = round(elapsed().seconds, 2)
        progress(f"  {measured.figures} in {durations[name]}s")
        figures |= measured.figures
        details |= measured.details
    details |= group_commit_bound(figures, details)
    report: dict[str, Any] = {
        key: round(value, 2) if key.endswith("_ms") else round(value)
        for key, value in figures.items()
    }
    report["replay_method"] = "shared.projections.replay (StreamStatsProjection)"
    if set(only) == set(SECTIONS):
        report["targets"] = check_targets(figures)
    report["duration_s"] = durations
    report["machine"] = {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "postgres": await servers.postgres_version(),
        "platform": platform.platform(),
    }
    report["details"] = {
        key: round(value, 2) if isinstance(value, float) else value
        for key, value in details.items()
    }
    report["notes"] = NOTES
    return report


def print_table(report: dict[str, Any]) -> None:
    """The report as aligned text, targets last."""
    for key, value in report.items():
        if not isinstance(value, dict):
            print(f"{key:<32} {value}")
    for key, target in report.get("targets", {}).items():
        verdict = "met" if target["met"] else "MISSED"
        print(f"target {key:<25} {target['value']:>12} {target['goal']:<38} {verdict}")
    print_groups(report)


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: run the chosen measurements and print the report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.eventlog", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(SECTIONS),
        default=list(SECTIONS),
        help="run only these measurements (targets need all of them)",
    )
    parser.add_argument(
        "--wal-timing",
        action="store_true",
        help="time PostgreSQL's WAL flushes (details.*_wal_flush_ms and the group-commit "
        "bound); it lengthens the 8-writer group's round a little",
    )
    args = parser.parse_args(argv)
    quiet_logging()
    started = perf_counter()
    busy_before = busy_cores_before()
    with running_servers() as servers:
        report = asyncio.run(run_all(servers, args.only, wal_timing=args.wal_timing))
    report["machine"]["busy_cores_before"] = round(busy_before, 2)
    report["duration_s"]["total"] = round(perf_counter() - started, 2)
    print_report(report, as_json=args.json, table=print_table)


if __name__ == "__main__":
    main()
