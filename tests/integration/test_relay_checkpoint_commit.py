"""The relay's checkpoint commits do not wait for the WAL flush; the log's own records do.

A flush in every batch's round would stand between an append and its publication (the
leader reads the log again only after its checkpoint is written). The records of skipped
events are events of the log, and commit flushed like every append: no one may see an
event that a crash could take back.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from services.relay import relay as relay_module
from services.relay.relay import Relay
from shared import db
from shared.eventlog import ANY, EventStore, new_events
from shared.events.catalog import ApplicationDisabled, ApplicationRegistered
from shared.messaging import ensure_event_stream
from shared.subjects import Subjects
from shared.testing import wait_until
from tests.support import running

CheckpointWrite = tuple[bool, str]
"""Whether the checkpoint was written inside a transaction, and its synchronous_commit."""


def record_checkpoint_writes(monkeypatch: pytest.MonkeyPatch) -> list[CheckpointWrite]:
    """Every checkpoint write of the relays made from now on, with the setting it ran under."""
    writes: list[CheckpointWrite] = []

    class Recording(asyncpg.Connection):  # type: ignore[misc]  # asyncpg's class is untyped
        async def execute(self, query: str, *args: Any, **kwargs: Any) -> str:
            result: str = await super().execute(query, *args, **kwargs)
            if "INSERT INTO checkpoints" in query:
                setting = await self.fetchval("SHOW synchronous_commit")
                writes.append((self.is_in_transaction(), setting))
            return result

    connect = db.connect

    async def recording(*args: Any, **kwargs: Any) -> asyncpg.Connection:
        conn = await connect(*args, connection_class=Recording, **kwargs)
        # The tests' PostgreSQL does not flush commits at all (for speed): a durable one does.
        await conn.execute("SET synchronous_commit = on")
        return conn

    monkeypatch.setattr(relay_module, "connect", recording)
    return writes


async def append_one_published(store: EventStore, relay: Relay) -> None:
    """Append one event and wait until `relay` has published it."""
    before = relay.published
    await store.append(
        "application-a",
        new_events([ApplicationDisabled(application_id="a")]),
        expected_version=ANY,
    )
    await wait_until(lambda: relay.published > before, what="the event published")


async def test_the_checkpoint_is_committed_without_waiting_for_the_flush(
    store: EventStore, relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = record_checkpoint_writes(monkeypatch)
    async with running(relay.run):
        # One at a time: each in a batch, and a checkpoint, of its own.
        for _ in range(3):
            await append_one_published(store, relay)
        await wait_until(lambda: len(writes) >= 3, what="the checkpoints written")
    assert set(writes) == {(False, "off")}


async def test_a_skipped_events_record_and_its_checkpoint_commit_flushed(
    app_database_url: str,
    schema: str,
    store: EventStore,
    nc: NatsClient,
    subjects: Subjects,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    js = nc.jetstream()
    info = await ensure_event_stream(js, subjects)
    # JetStream refuses (4xx) a message over the stream's max_msg_size: skipped and recorded.
    await js.update_stream(dataclasses.replace(info.config, max_msg_size=4096))
    big = ApplicationRegistered(application_id="a", name="x" * 8000, repository_id="r", path="p")
    await store.append("application-a", new_events([big]), expected_version=ANY)
    writes = record_checkpoint_writes(monkeypatch)
    relay = Relay(
        database_url=app_database_url, schema=schema, js=js, subjects=subjects, publish_timeout_s=1
    )
    async with running(relay.run):
        await wait_until(lambda: relay.skipped == 1, what="the big event skipped")
        await wait_until(lambda: store.read_stream("relay-relay"), what="its record in the log")
        # The record is published like any event; its batch's checkpoint goes unflushed again.
        await wait_until(lambda: len(writes) >= 2, what="the record's own checkpoint written")
    assert writes[0] == (True, "on")
    assert set(writes[1:]) == {(False, "off")}
