"""Relay and consumer runtime in one process: delivery, dedupe, dead letters, tracing."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.relay.relay import Relay
from shared.apikeys import create_key, secret_sha256
from shared.consumer import EventConsumer
from shared.eventlog import ANY, EventStore, new_events
from shared.events import RecordedEvent
from shared.events.catalog import ApiKeyCreated, ApplicationDisabled
from shared.messaging import ensure_event_stream
from shared.subjects import Subjects
from shared.testing import wait_until
from tests.support import running
from tests.support.relay import consumer_of, counting_consumer, counting_handler


async def handled_rows(store: EventStore, count: int) -> bool:
    handled: int = await store.pool.fetchval("SELECT count(*) FROM handled_counts")
    return handled == count


@pytest.mark.usefixtures("counts_table")
async def test_every_appended_event_is_handled_exactly_once(
    nc: NatsClient, store: EventStore, subjects: Subjects, relay: Relay
) -> None:
    """Events appended while relay and consumer run are each handled exactly once."""
    consumer = counting_consumer(nc.jetstream(), store, subjects)
    async with running(relay.run, consumer.run):
        for i in range(20):
            await store.append(
                f"application-a{i % 3}",
                new_events([ApplicationDisabled(application_id=f"a{i}")] * 5),
                expected_version=ANY,
            )
        await wait_until(lambda: handled_rows(store, 100), what="all 100 events handled")
    counts = await store.pool.fetch("SELECT n FROM handled_counts")
    assert {r["n"] for r in counts} == {1}
    assert consumer.stats.dead_lettered == 0


@pytest.mark.usefixtures("counts_table")
async def test_redelivery_after_commit_before_ack_is_skipped(
    nc: NatsClient, store: EventStore, subjects: Subjects, relay: Relay
) -> None:
    """A consumer dying after commit, before ack: the redelivery is recognised and skipped."""
    await store.append(
        "application-x", new_events([ApplicationDisabled(application_id="x")]), expected_version=ANY
    )

    class Crash(BaseException):
        pass

    async def crash_before_ack(_event: RecordedEvent) -> None:
        raise Crash

    dying = counting_consumer(nc.jetstream(), store, subjects, after_commit=crash_before_ack)
    async with running(relay.run):
        with pytest.raises(Crash):
            await dying.run(asyncio.Event())
    assert await store.pool.fetchval("SELECT sum(n) FROM handled_counts") == 1

    survivor = counting_consumer(nc.jetstream(), store, subjects)
    async with running(survivor.run):
        await wait_until(
            lambda: survivor.stats.skipped_duplicates == 1, what="the redelivery skipped"
        )
    assert await store.pool.fetchval("SELECT sum(n) FROM handled_counts") == 1
    assert survivor.stats.handled == 0


@pytest.mark.usefixtures("counts_table")
async def test_garbage_and_unknown_types_go_to_dead_letter_and_consuming_goes_on(
    nc: NatsClient, store: EventStore, subjects: Subjects, relay: Relay
) -> None:
    """Garbage bytes and an unknown event type are dead-lettered; later events are still handled."""
    js = nc.jetstream()
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
    consumer = counting_consumer(js, store, subjects)
    async with running(relay.run, consumer.run):
        await store.append(
            "application-y",
            new_events([ApplicationDisabled(application_id="y")]),
            expected_version=ANY,
        )
        await wait_until(lambda: handled_rows(store, 1), what="the later event handled")
    letters = await store.pool.fetch("SELECT subject, data, error FROM dead_letters ORDER BY id")
    assert [r["subject"] for r in letters] == [
        subject,
        subjects.event("application-x", "no_such_event"),
    ]
    assert bytes(letters[0]["data"]) == b"\x00\xffnot json at all"
    assert "unknown event type 'no_such_event'" in letters[1]["error"]


async def test_failing_handler_is_retried_then_dead_lettered(
    nc: NatsClient, store: EventStore, subjects: Subjects, relay: Relay
) -> None:
    """A handler that keeps failing is retried with back-off, then dead-lettered."""
    attempts = 0

    async def always_fails(_event: RecordedEvent, _conn: asyncpg.Connection) -> None:
        nonlocal attempts
        attempts += 1
        raise RuntimeError("downstream is down")

    consumer = EventConsumer(
        name="failing",
        js=nc.jetstream(),
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
    async with running(relay.run, consumer.run):
        await wait_until(lambda: consumer.stats.dead_lettered == 1, what="the event dead-lettered")
    assert attempts == 3
    error = await store.pool.fetchval("SELECT error FROM dead_letters")
    assert error == "RuntimeError: downstream is down"


@pytest.mark.usefixtures("counts_table")
async def test_consumer_span_is_a_child_of_the_appending_span(
    nc: NatsClient, store: EventStore, subjects: Subjects, relay: Relay
) -> None:
    """The trace context stored at append time makes the consumer's span the appender's child."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    consumer = counting_consumer(
        nc.jetstream(), store, subjects, tracer=provider.get_tracer("slipway.consumer")
    )
    with tracer.start_as_current_span("publish deployment") as parent:
        await store.append(
            "application-t",
            new_events([ApplicationDisabled(application_id="t")]),
            expected_version=ANY,
        )
    async with running(relay.run, consumer.run):
        await wait_until(lambda: consumer.stats.handled == 1, what="the event handled")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    child = spans["counter handle application_disabled"]
    assert child.context.trace_id == parent.get_span_context().trace_id
    assert child.parent is not None
    assert child.parent.span_id == parent.get_span_context().span_id
    assert child.kind == trace.SpanKind.CONSUMER


async def test_concurrent_consumer_keeps_the_order_of_each_key(
    nc: NatsClient, store: EventStore, subjects: Subjects, relay: Relay
) -> None:
    """With concurrency, events of different keys overlap and those of one key keep their order."""
    js = nc.jetstream()
    seen: dict[str, list[int]] = {}
    active = most = 0

    async def handler(event: RecordedEvent, _conn: asyncpg.Connection) -> None:
        nonlocal active, most
        active += 1
        most = max(most, active)
        await asyncio.sleep(0.02)  # the handler's work: long enough for handlers to overlap
        active -= 1
        seen.setdefault(event.stream_id, []).append(event.stream_version)

    consumer = EventConsumer(
        name="ordered",
        js=js,
        pool=store.pool,
        registry=store.registry,
        subjects=subjects,
        handler=handler,
        batch_size=12,
        events_per_transaction=1,
        fetch_timeout_s=0.2,
        concurrency=3,
        ordering_key=lambda event: event.stream_id,
    )
    for i in range(30):
        await store.append(
            f"application-k{i % 3}",
            new_events([ApplicationDisabled(application_id=f"k{i % 3}")]),
            expected_version=ANY,
        )
    async with running(relay.run, consumer.run):
        await wait_until(
            lambda: sum(len(versions) for versions in seen.values()) == 30,
            what="all 30 events handled",
        )
    assert len(seen) == 3
    assert all(versions == sorted(versions) for versions in seen.values())
    assert 1 < most <= 3


def test_concurrency_needs_an_ordering_key(store: EventStore, subjects: Subjects) -> None:
    """Handling events concurrently without saying what must stay in order is refused."""
    with pytest.raises(ValueError, match="ordering_key"):
        EventConsumer(
            name="unordered",
            js=None,  # type: ignore[arg-type]
            pool=store.pool,
            registry=store.registry,
            subjects=subjects,
            handler=counting_handler,
            concurrency=2,
        )


async def test_only_the_owner_reconciles_the_events_stream(
    nc: NatsClient, subjects: Subjects
) -> None:
    """A consumer's ensure keeps the relay's stream settings; the relay's own brings them back."""
    js = nc.jetstream()
    await ensure_event_stream(js, subjects, reconcile=True, duplicate_window_s=300)
    info = await ensure_event_stream(js, subjects, duplicate_window_s=60)
    assert info.config.duplicate_window == 300
    await ensure_event_stream(js, subjects, reconcile=True, duplicate_window_s=90)
    assert (await js.stream_info(subjects.events_stream)).config.duplicate_window == 90


async def test_a_consumer_acts_on_the_logged_key_hash_that_nats_never_carried(
    nc: NatsClient, store: EventStore, subjects: Subjects, relay: Relay
) -> None:
    """The relay leaves `secret_sha256` out of the message; the consumer still takes it as the
    relay's (not forged, not undecodable) and hands its handler the stored event, hash and all."""
    key, secret = await create_key(store, role="admin", name="ops")
    seen: list[RecordedEvent] = []

    async def keep(event: RecordedEvent, _conn: asyncpg.Connection) -> None:
        seen.append(event)

    consumer = consumer_of(nc.jetstream(), store, subjects, keep, name="keys")
    async with running(relay.run, consumer.run):
        await wait_until(lambda: bool(seen), what="the key's event handled")
    (event,) = seen
    assert isinstance(event.event, ApiKeyCreated)
    assert event.event.key_id == key.key_id
    assert event.event.secret_sha256 == secret_sha256(secret)
    assert consumer.stats.forged == 0 and consumer.stats.dead_lettered == 0
