"""The event log's append and read contract, against a real PostgreSQL."""

from __future__ import annotations

import asyncpg
import pytest

from shared.errors import ConcurrencyConflict, EventTooLarge, IdempotencyViolation
from shared.eventlog import ANY, NO_STREAM, EventStore, new_events
from shared.events import NewEvent
from shared.events.catalog import ApplicationDisabled, ApplicationRegistered
from shared.ids import new_event_id, new_id


def registered(app: str) -> ApplicationRegistered:
    return ApplicationRegistered(application_id=app, name="web", repository_id="r1", path="web/prd")


async def test_append_then_read_stream_round_trips_events(store: EventStore) -> None:
    """Appended events come back from read_stream in version order, equal to what was sent."""
    app = new_id()
    sent = [registered(app), ApplicationDisabled(application_id=app)]
    result = await store.append(f"application-{app}", new_events(sent), expected_version=NO_STREAM)
    assert result.stream_versions == (0, 1)
    read = await store.read_stream(f"application-{app}")
    assert [r.event for r in read] == sent
    assert [r.global_position for r in read] == list(result.global_positions)


async def test_batch_append_is_one_atomic_statement(store: EventStore) -> None:
    """A batch whose expected version is stale appends none of its events."""
    app = new_id()
    stream = f"application-{app}"
    await store.append(stream, new_events([registered(app)]), expected_version=NO_STREAM)
    with pytest.raises(ConcurrencyConflict):
        await store.append(
            stream, new_events([ApplicationDisabled(application_id=app)] * 5), expected_version=3
        )
    assert await store.stream_version(stream) == 0


async def test_event_over_the_size_cap_is_refused_naming_type_stream_and_size(
    store: EventStore,
) -> None:
    """A batch holding one event over `max_event_bytes` raises EventTooLarge and writes nothing."""
    capped = EventStore(store.pool, store.registry, max_event_bytes=4096)
    app = new_id()
    stream = f"application-{app}"
    huge = ApplicationRegistered(application_id=app, name="x" * 5000, repository_id="r1", path="p")
    with pytest.raises(EventTooLarge) as raised:
        await capped.append(stream, new_events([registered(app), huge]), expected_version=ANY)
    message = str(raised.value)
    assert "'application_registered'" in message and repr(stream) in message
    assert raised.value.size > 5000 and raised.value.limit == 4096
    assert await store.stream_version(stream) == NO_STREAM
    # Under the cap the same store appends as usual.
    await capped.append(stream, new_events([registered(app)]), expected_version=NO_STREAM)


async def test_same_event_id_same_payload_returns_original_positions(store: EventStore) -> None:
    """Re-appending the same event ids and payloads is a no-op that reports the stored positions."""
    app = new_id()
    batch = new_events([registered(app), ApplicationDisabled(application_id=app)])
    first = await store.append(f"application-{app}", batch, expected_version=NO_STREAM)
    again = await store.append(f"application-{app}", batch, expected_version=NO_STREAM)
    assert again == first
    assert len(await store.read_stream(f"application-{app}")) == 2


async def test_same_event_id_other_payload_is_a_clear_error(store: EventStore) -> None:
    """Reusing an event id for a different event raises IdempotencyViolation naming the id."""
    app = new_id()
    event_id = new_event_id()
    await store.append(
        f"application-{app}",
        [NewEvent(event=registered(app), event_id=event_id)],
        expected_version=NO_STREAM,
    )
    other = NewEvent(event=ApplicationDisabled(application_id=app), event_id=event_id)
    with pytest.raises(IdempotencyViolation, match=str(event_id)):
        await store.append(f"application-{app}", [other], expected_version=ANY)


async def test_application_role_cannot_update_or_delete_events(store: EventStore) -> None:
    """The role services log in as may insert and select events, never change them."""
    app = new_id()
    await store.append(f"application-{app}", new_events([registered(app)]), expected_version=ANY)
    for statement in (
        "UPDATE events SET event_type = 'x'",
        "DELETE FROM events",
        "TRUNCATE events",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await store.pool.execute(statement)


async def test_owner_cannot_update_events_either(
    database_url: str, store: EventStore, schema: str
) -> None:
    """Even the schema owner is stopped by the append-only trigger."""
    app = new_id()
    await store.append(f"application-{app}", new_events([registered(app)]), expected_version=ANY)
    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("UPDATE events SET event_type = 'x'")
    finally:
        await conn.close()
