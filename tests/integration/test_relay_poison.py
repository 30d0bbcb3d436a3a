"""A poison pill in the log: an old event too large for the NATS server never halts the relay."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import msgspec
import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from services.relay.relay import Relay
from shared.eventlog import ANY, EventStore, new_events
from shared.events.catalog import ApplicationDisabled, ApplicationRegistered, EventPublishFailed
from shared.messaging import MSG_ID, ensure_event_stream
from shared.natsauth import inbox_prefix
from shared.subjects import Subjects
from shared.testing import wait_until
from slipway_sandbox.nats import NatsServer
from tests.support import running

MAX_PAYLOAD = 16 * 1024


@pytest.fixture
async def small_nats(tmp_path: Path) -> AsyncIterator[NatsClient]:
    """An admin client of a nats-server of its own that takes messages of at most 16 KiB."""
    with NatsServer(tmp_path / "nats", max_payload=MAX_PAYLOAD) as server:
        nc = await nats.connect(server.url)
        try:
            yield nc
        finally:
            await nc.close()


async def test_relay_skips_an_event_over_max_payload_records_it_and_goes_on(
    database_url: str,
    app_database_url: str,
    schema: str,
    store: EventStore,
    subjects: Subjects,
    small_nats: NatsClient,
) -> None:
    """An old row too large for NATS (written with SQL, as before the append cap) is skipped:
    the events after it are published, and EventPublishFailed in `relay-relay` names it."""
    assert small_nats.max_payload == MAX_PAYLOAD
    js = small_nats.jetstream()
    await ensure_event_stream(js, subjects)
    seen: list[str] = []

    async def record(msg: Msg) -> None:
        seen.append(msg.headers[MSG_ID] if msg.headers else "")

    await js.subscribe(subjects.all_events, ordered_consumer=True, cb=record)

    before = new_events([ApplicationDisabled(application_id="a1")])
    await store.append("application-a1", before, expected_version=ANY)
    poison_id = uuid.uuid4()
    huge = ApplicationRegistered(
        application_id="a2", name="x" * (2 * MAX_PAYLOAD), repository_id="r", path="p"
    )
    owner = await asyncpg.connect(database_url)
    try:
        await owner.execute(
            f'INSERT INTO "{schema}".events (stream_id, stream_version, event_id, event_type, '
            "schema_version, payload, metadata) VALUES ($1, 0, $2, $3, 1, $4, '{}'::jsonb)",
            "application-a2",
            poison_id,
            "application_registered",
            msgspec.json.encode(huge),
        )
    finally:
        await owner.close()
    after = new_events([ApplicationDisabled(application_id=f"b{i}") for i in range(5)])
    await store.append("application-b", after, expected_version=ANY)

    relay = Relay(database_url=app_database_url, schema=schema, js=js, subjects=subjects)
    wanted = {str(e.event_id) for e in before + after}
    async with running(relay.run):
        await wait_until(lambda: wanted <= set(seen), what=lambda: f"published {seen}")
        failures = await wait_until(
            lambda: store.read_stream("relay-relay"), what="EventPublishFailed in relay-relay"
        )
        # The record is itself published, like any event.
        await wait_until(
            lambda: str(failures[0].event_id) in seen, what="EventPublishFailed published"
        )
    assert str(poison_id) not in seen
    assert relay.skipped == 1
    [failed] = [f.event for f in failures]
    assert isinstance(failed, EventPublishFailed)
    assert failed.event_id == str(poison_id)
    assert failed.stream_id == "application-a2"
    assert failed.event_type == "application_registered"
    assert failed.size_bytes > 2 * MAX_PAYLOAD
    assert f"max_payload of {MAX_PAYLOAD}" in failed.reason


async def test_relay_skips_an_event_jetstream_refuses_and_goes_on(
    app_database_url: str,
    schema: str,
    store: EventStore,
    subjects: Subjects,
    small_nats: NatsClient,
) -> None:
    """An event under max_payload but over the stream's max_msg_size gets a 4xx PubAck error,
    which no retry fixes: it is skipped and recorded, the next event is published."""
    js = small_nats.jetstream()
    info = await ensure_event_stream(js, subjects)
    await js.update_stream(dataclasses.replace(info.config, max_msg_size=4096))
    seen: list[str] = []

    async def record(msg: Msg) -> None:
        seen.append(msg.headers[MSG_ID] if msg.headers else "")

    await js.subscribe(subjects.all_events, ordered_consumer=True, cb=record)
    big = new_events(
        [ApplicationRegistered(application_id="a", name="x" * 8000, repository_id="r", path="p")]
    )
    await store.append("application-a", big, expected_version=ANY)
    after = new_events([ApplicationDisabled(application_id="a")])
    await store.append("application-a", after, expected_version=ANY)

    # nats-py leaves such an async publish unanswered: the relay finds the refusal by
    # publishing what got no PubAck in time once more, one at a time.
    relay = Relay(
        database_url=app_database_url, schema=schema, js=js, subjects=subjects, publish_timeout_s=1
    )
    async with running(relay.run):
        await wait_until(lambda: str(after[0].event_id) in seen, what=lambda: f"published {seen}")
        [failure] = await wait_until(
            lambda: store.read_stream("relay-relay"), what="EventPublishFailed in relay-relay"
        )
    assert str(big[0].event_id) not in seen
    assert isinstance(failure.event, EventPublishFailed)
    assert failure.event.event_id == str(big[0].event_id)
    assert "JetStream refused it" in failure.event.reason


async def test_relay_skips_events_its_user_may_not_publish_and_records_each_once(
    app_database_url: str,
    schema: str,
    store: EventStore,
    subjects: Subjects,
    tmp_path: Path,
) -> None:
    """Publishing to a subject the relay's NATS user is denied gets no answer, only an -ERR:
    each such event is skipped and recorded once; the records, denied too, only counted."""
    # The server's users have the permissions of another prefix than the test's subjects.
    with NatsServer(tmp_path / "nats", subjects=Subjects("elsewhere")) as server:
        admin = await nats.connect(server.url)
        relay_nc = await nats.connect(server.url_for("relay"), inbox_prefix=inbox_prefix("relay"))
        try:
            await ensure_event_stream(admin.jetstream(), subjects)
            sent = new_events([ApplicationDisabled(application_id=f"a{i}") for i in range(2)])
            await store.append("application-a", sent, expected_version=ANY)
            relay = Relay(
                database_url=app_database_url,
                schema=schema,
                js=relay_nc.jetstream(),
                subjects=subjects,
                publish_timeout_s=0.5,
            )
            async with running(relay.run):
                # Both events, then both records of them, are skipped.
                await wait_until(lambda: relay.skipped == 4, what=lambda: f"{relay.skipped}")
            failures = await store.read_stream("relay-relay")
        finally:
            await relay_nc.close()
            await admin.close()
    assert [f.event.event_id for f in failures] == [str(e.event_id) for e in sent]  # type: ignore[attr-defined]
    assert all("permissions violation" in f.event.reason.lower() for f in failures)  # type: ignore[attr-defined]
