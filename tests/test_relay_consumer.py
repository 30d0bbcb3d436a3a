"""Relay and consumer runtime in one process: delivery, dedupe, dead letters, tracing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.consumer import EventConsumer
from shared.eventlog import ANY, EventStore, new_events
from shared.events import RecordedEvent
from shared.events.catalog import ApplicationDisabled
from shared.messaging import ensure_event_stream
from shared.relay import Relay
from shared.subjects import Subjects


@contextlib.asynccontextmanager
async def running(*coros: object) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(c(stop)) for c in coros]  # type: ignore[operator]
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)


async def wait_for(predicate, within_s: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + within_s
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def counting_handler(event: RecordedEvent, conn: asyncpg.Connection) -> None:
    """Not idempotent on purpose: only the runtime's inbox keeps it exactly-once."""
    await conn.execute(
        "INSERT INTO handled_counts (event_id, n) VALUES ($1, 1) "
        "ON CONFLICT (event_id) DO UPDATE SET n = handled_counts.n + 1",
        event.event_id,
    )


@pytest.fixture
async def counts_table(database_url: str, schema: str) -> None:
    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    await conn.execute("CREATE TABLE handled_counts (event_id uuid PRIMARY KEY, n int NOT NULL)")
    await conn.execute("GRANT SELECT, INSERT, UPDATE ON handled_counts TO slipway_app")
    await conn.close()


def make_relay(app_database_url: str, schema: str, nc: NatsClient, subjects: Subjects) -> Relay:
    return Relay(database_url=app_database_url, schema=schema, js=nc.jetstream(), subjects=subjects)


def make_consumer(
    nc: NatsClient, store: EventStore, subjects: Subjects, **kw: Any
) -> EventConsumer:
    return EventConsumer(
        name="counter",
        js=nc.jetstream(),
        pool=store.pool,
        registry=store.registry,
        subjects=subjects,
        handler=counting_handler,
        ack_wait_s=1.0,
        fetch_timeout_s=0.2,
        **kw,
    )


async def test_every_appended_event_is_handled_exactly_once(
    app_database_url: str,
    schema: str,
    nc: NatsClient,
    store: EventStore,
    subjects: Subjects,
    counts_table: None,
) -> None:
    """Events appended while relay and consumer run are each handled exactly once."""
    js = nc.jetstream()
    await ensure_event_stream(js, subjects)
    consumer = make_consumer(nc, store, subjects)
    async with running(make_relay(app_database_url, schema, nc, subjects).run, consumer.run):
        for i in range(20):
            await store.append(
                f"application-a{i % 3}",
                new_events([ApplicationDisabled(application_id=f"a{i}")] * 5),
                expected_version=ANY,
            )

        async def all_handled() -> bool:
            return await store.pool.fetchval("SELECT count(*) FROM handled_counts") == 100

        await wait_for(all_handled)
    counts = await store.pool.fetch("SELECT n FROM handled_counts")
    assert {r["n"] for r in counts} == {1}
    assert consumer.stats.dead_lettered == 0


async def test_redelivery_after_commit_before_ack_is_skipped(
    app_database_url: str,
    schema: str,
    nc: NatsClient,
    store: EventStore,
    subjects: Subjects,
    counts_table: None,
) -> None:
    """A consumer dying after commit, before ack: the redelivery is recognised and skipped."""
    js = nc.jetstream()
    await ensure_event_stream(js, subjects)
    await store.append(
        "application-x", new_events([ApplicationDisabled(application_id="x")]), expected_version=ANY
    )

    class Crash(BaseException):
        pass

    async def crash_before_ack(event: RecordedEvent) -> None:
        raise Crash

    dying = make_consumer(nc, store, subjects, after_commit=crash_before_ack)
    async with running(make_relay(app_database_url, schema, nc, subjects).run):
        with pytest.raises(Crash):
            await dying.run(asyncio.Event())
    assert await store.pool.fetchval("SELECT sum(n) FROM handled_counts") == 1

    survivor = make_consumer(nc, store, subjects)
    async with running(survivor.run):

        async def skipped() -> bool:
            return survivor.stats.skipped_duplicates == 1

        await wait_for(skipped)
    assert await store.pool.fetchval("SELECT sum(n) FROM handled_counts") == 1
    assert survivor.stats.handled == 0


async def test_garbage_and_unknown_types_go_to_dead_letter_and_consuming_goes_on(
    app_database_url: str,
    schema: str,
    nc: NatsClient,
    store: EventStore,
    subjects: Subjects,
    counts_table: None,
) -> None:
    """Garbage bytes and an unknown event type are dead-lettered; later events are still handled."""
    js = nc.jetstream()
    await ensure_event_stream(js, subjects)
    subject = subjects.event("application-x", "application_disabled")
    await js.publish(subject, b"\x00\xffnot json at all")
    await js.publish(
        subjects.event("application-x", "no_such_event"),
        b"{}",
        headers={
            "Nats-Msg-Id": "7f6f1f5e-1111-4111-8111-111111111111",
            "Slipway-Event-Type": "no_such_event",
            "Slipway-Schema-Version": "1",
            "Slipway-Stream-Id": "application-x",
            "Slipway-Stream-Version": "0",
            "Slipway-Global-Position": "1",
            "Slipway-Tx-Id": "1",
            "Slipway-Recorded-At": "2026-11-28T00:00:00+00:00",
            "Slipway-Metadata": "{}",
        },
    )
    consumer = make_consumer(nc, store, subjects)
    async with running(make_relay(app_database_url, schema, nc, subjects).run, consumer.run):
        await store.append(
            "application-y",
            new_events([ApplicationDisabled(application_id="y")]),
            expected_version=ANY,
        )

        async def handled() -> bool:
            return await store.pool.fetchval("SELECT count(*) FROM handled_counts") == 1

        await wait_for(handled)
    letters = await store.pool.fetch("SELECT subject, data, error FROM dead_letters ORDER BY id")
    assert [r["subject"] for r in letters] == [
        subject,
        subjects.event("application-x", "no_such_event"),
    ]
    assert bytes(letters[0]["data"]) == b"\x00\xffnot json at all"
    assert "unknown event type 'no_such_event'" in letters[1]["error"]


async def test_failing_handler_is_retried_then_dead_lettered(
    nc: NatsClient,
    store: EventStore,
    subjects: Subjects,
    app_database_url: str,
    schema: str,
) -> None:
    """A handler that keeps failing is retried with back-off, then dead-lettered."""
    js = nc.jetstream()
    await ensure_event_stream(js, subjects)
    attempts = 0

    async def always_fails(event: RecordedEvent, conn: asyncpg.Connection) -> None:
        nonlocal attempts
        attempts += 1
        raise RuntimeError("downstream is down")

    consumer = EventConsumer(
        name="failing",
        js=js,
        pool=store.pool,
        registry=store.registry,
        subjects=subjects,
        handler=always_fails,
        max_deliver=3,
        backoff_s=(0.05,),
        fetch_timeout_s=0.2,
    )
    await store.append(
        "application-z", new_events([ApplicationDisabled(application_id="z")]), expected_version=ANY
    )
    async with running(make_relay(app_database_url, schema, nc, subjects).run, consumer.run):

        async def dead() -> bool:
            return consumer.stats.dead_lettered == 1

        await wait_for(dead)
    assert attempts == 3
    error = await store.pool.fetchval("SELECT error FROM dead_letters")
    assert error == "RuntimeError: downstream is down"


async def test_consumer_span_is_a_child_of_the_appending_span(
    app_database_url: str,
    schema: str,
    nc: NatsClient,
    store: EventStore,
    subjects: Subjects,
    counts_table: None,
) -> None:
    """The trace context stored at append time makes the consumer's span the appender's child."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    js = nc.jetstream()
    await ensure_event_stream(js, subjects)
    consumer = make_consumer(nc, store, subjects, tracer=provider.get_tracer("slipway.consumer"))
    with tracer.start_as_current_span("publish deployment") as parent:
        await store.append(
            "application-t",
            new_events([ApplicationDisabled(application_id="t")]),
            expected_version=ANY,
        )
    async with running(make_relay(app_database_url, schema, nc, subjects).run, consumer.run):

        async def handled() -> bool:
            return consumer.stats.handled == 1

        await wait_for(handled)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    child = spans["counter handle application_disabled"]
    assert child.context.trace_id == parent.get_span_context().trace_id
    assert child.parent is not None
    assert child.parent.span_id == parent.get_span_context().span_id
    assert child.kind == trace.SpanKind.CONSUMER
