"""The one decider shell (`shared.eventlog.execute`) and the stores it runs over.

Every test runs twice: over `shared.testing.InMemoryStore` and over the real
PostgreSQL `EventStore` (a contract suite, as eventsourcing runs its recorder
tests over every backend), so the in-memory store used in unit tests cannot
drift from the real one.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.decider import OPENING, Functions, StreamTaken, fold
from shared.errors import ConcurrencyConflict, IdempotencyViolation, Rejected
from shared.eventlog import NO_STREAM, EventStore, new_events
from shared.eventlog.envelope import envelope
from shared.eventlog.execute import Folded, StreamStore, execute, load
from shared.events.base import Event, Metadata, NewEvent, RecordedEvent
from shared.events.catalog import ApplicationDisabled, ApplicationEnabled
from shared.ids import deterministic_event_id, new_id
from shared.testing import InMemoryStore
from shared.tracing import context_from_traceparent

# A decider small enough to read at a glance: is the application disabled?


@dataclass(frozen=True)
class Switch:
    application_id: str
    disable: bool


def _evolve(disabled: bool | None, event: Event) -> bool | None:
    if isinstance(event, ApplicationDisabled):
        return True
    if isinstance(event, ApplicationEnabled):
        return False
    return disabled


def _decide(disabled: bool | None, command: Switch) -> Sequence[Event]:
    if disabled is None and not command.disable:
        raise Rejected("nothing to enable")
    if disabled == command.disable:
        return []
    if command.disable:
        return [ApplicationDisabled(application_id=command.application_id)]
    return [ApplicationEnabled(application_id=command.application_id)]


SWITCH = Functions(initial=None, evolve_fn=_evolve, decide_fn=_decide)


@pytest.fixture(params=["memory", "postgres"])
def any_store(request: pytest.FixtureRequest) -> StreamStore:
    if request.param == "memory":
        return InMemoryStore()
    store: EventStore = request.getfixturevalue("store")
    return store


class Interleaving:
    """A store through which another writer appends right after each of our first `times`
    reads: the lost race that `execute` must recover from."""

    def __init__(self, store: Any, stream: str, event: Event, *, times: int) -> None:
        self.store, self.stream, self.event, self.left = store, stream, event, times
        self.reads = 0

    async def read_stream(self, stream_id: str, **kwargs: Any) -> list[RecordedEvent]:
        history: list[RecordedEvent] = await self.store.read_stream(stream_id, **kwargs)
        self.reads += 1
        if self.left > 0:
            self.left -= 1
            await self.store.append(self.stream, new_events([self.event]), expected_version=None)
        return history

    async def append(self, stream_id: str, events: Sequence[NewEvent], **kwargs: Any) -> Any:
        return await self.store.append(stream_id, events, **kwargs)


def _stream() -> tuple[str, str]:
    app = new_id()
    return app, f"application-{app}"


async def test_execute_decides_on_the_folded_stream_and_appends_at_its_version(
    any_store: StreamStore,
) -> None:
    """Decided events are appended after the version read, with the envelope given."""
    app, stream = _stream()
    cause = envelope(actor="test", correlation_id="corr-1")
    first = await execute(any_store, stream, SWITCH, Switch(app, disable=True), cause)
    assert first.before == Folded(None)
    assert first.events == (ApplicationDisabled(application_id=app),)
    assert first.after.state is True and first.after.version == 0
    second = await execute(any_store, stream, SWITCH, Switch(app, disable=False), cause)
    assert second.before.state is True and second.before.version == 0
    assert second.after.version == 1
    history = await any_store.read_stream(stream)
    assert [h.event for h in history] == [*first.events, *second.events]
    assert {h.metadata.actor for h in history} == {"test"}
    assert history[-1].global_position == second.after.position


async def test_execute_appends_nothing_when_the_decider_decides_nothing(
    any_store: StreamStore,
) -> None:
    """A command the state already satisfies writes nothing and reports the state read."""
    app, stream = _stream()
    await execute(any_store, stream, SWITCH, Switch(app, disable=True), Metadata())
    again = await execute(any_store, stream, SWITCH, Switch(app, disable=True), Metadata())
    assert again.events == () and again.after == again.before
    assert len(await any_store.read_stream(stream)) == 1


async def test_execute_decides_again_on_what_a_concurrent_writer_appended(
    any_store: StreamStore,
) -> None:
    """A conflict re-reads and decides again: here the other writer already did the work."""
    app, stream = _stream()
    racing = Interleaving(any_store, stream, ApplicationDisabled(application_id=app), times=1)
    done = await execute(racing, stream, SWITCH, Switch(app, disable=True), Metadata())
    assert racing.reads == 2
    assert done.events == () and done.before.state is True and done.before.version == 0
    assert len(await any_store.read_stream(stream)) == 1


async def test_execute_gives_up_with_the_conflict_after_max_attempts(
    any_store: StreamStore,
) -> None:
    """A stream that moves under every attempt raises `ConcurrencyConflict`, bounded."""
    app, stream = _stream()
    racing = Interleaving(any_store, stream, ApplicationEnabled(application_id=app), times=99)
    seen: list[ConcurrencyConflict] = []
    with pytest.raises(ConcurrencyConflict) as caught:
        await execute(
            racing, stream, SWITCH, Switch(app, disable=True), Metadata(),
            max_attempts=3, on_conflict=seen.append,
        )  # fmt: skip
    assert racing.reads == 3 and len(seen) == 3
    assert caught.value.stream_id == stream
    history = await any_store.read_stream(stream)
    assert all(isinstance(h.event, ApplicationEnabled) for h in history)


async def test_a_rejection_is_raised_at_once_and_never_retried(any_store: StreamStore) -> None:
    """`Rejected` from decide reaches the caller on the first attempt; nothing is written."""
    app, stream = _stream()
    racing = Interleaving(any_store, stream, ApplicationEnabled(application_id=app), times=0)
    with pytest.raises(Rejected, match="nothing to enable"):
        await execute(racing, stream, SWITCH, Switch(app, disable=False), Metadata())
    assert racing.reads == 1
    assert await any_store.read_stream(stream) == []


async def test_derived_event_ids_make_a_repeated_append_idempotent(
    any_store: StreamStore,
) -> None:
    """The same batch appended twice (a retry after a lost reply) is stored once."""
    app, stream = _stream()
    event = ApplicationDisabled(application_id=app)
    new = [NewEvent(event=event, event_id=deterministic_event_id("t", app), metadata=Metadata())]
    first = await any_store.append(stream, new, expected_version=NO_STREAM)
    again = await any_store.append(stream, new, expected_version=NO_STREAM)
    assert again.stream_versions == first.stream_versions == (0,)
    assert again.global_positions == first.global_positions
    other = [NewEvent(event=ApplicationEnabled(application_id=app), event_id=new[0].event_id)]
    with pytest.raises(IdempotencyViolation):
        await any_store.append(stream, other, expected_version=None)
    with pytest.raises(ConcurrencyConflict):
        await any_store.append(stream, new_events([event]), expected_version=NO_STREAM)


async def test_execute_with_event_ids_passes_them_to_the_append(any_store: StreamStore) -> None:
    """`event_ids` names each decided event, so a redelivered command appends once."""
    app, stream = _stream()

    def ids(index: int, _event: object) -> uuid.UUID:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"{app}/{index}")

    done = await execute(
        any_store, stream, SWITCH, Switch(app, disable=True), Metadata(), event_ids=ids
    )
    assert [n.event_id for n in done.appended] == [ids(0, None)]
    assert [h.event_id for h in await any_store.read_stream(stream)] == [ids(0, None)]


async def test_load_from_a_snapshot_reads_only_what_follows_it(any_store: StreamStore) -> None:
    """`start` (a state the caller kept) is folded on from, not re-read from version 0."""
    app, stream = _stream()
    await execute(any_store, stream, SWITCH, Switch(app, disable=True), Metadata())
    kept = await load(any_store, stream, SWITCH)
    await execute(any_store, stream, SWITCH, Switch(app, disable=False), Metadata(), start=kept)
    # A snapshot that lies about the state shows which events were folded: only the new one.
    lying = Folded(None, kept.version, kept.position)
    # A deliberately wrong snapshot: its state (None) is not a state of this decider.
    assert (await load(any_store, stream, SWITCH, start=lying)).state is False  # type: ignore[misc]
    assert (await load(any_store, stream, SWITCH)).version == 1
    assert fold(SWITCH, [ApplicationDisabled(application_id=app)]) is True


def test_the_envelope_follows_its_cause_and_the_current_trace() -> None:
    """Caused by an event: its id, its correlation, and the current span's trace (else its)."""
    traced = "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01"
    cause = RecordedEvent(
        global_position=1, tx_id=1, stream_id="deployment-x", stream_version=0,
        event_id=uuid.uuid4(), event_type="t", schema_version=1,
        event=ApplicationDisabled(application_id="a"),
        metadata=Metadata(correlation_id="chain", traceparent=traced),
        recorded_at=datetime(2026, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    plain = envelope(actor="planner", caused_by=cause, correlation_id="fallback")
    assert plain.causation_id == str(cause.event_id)
    assert plain.correlation_id == "chain" and plain.actor == "planner"
    assert plain.traceparent == traced
    handling = "00-fedcba9876543210fedcba9876543210-fedcba9876543210-01"
    current = envelope(caused_by=cause, context=context_from_traceparent(handling))
    assert current.traceparent == handling
    by_command = envelope(actor="api", correlation_id="req-1")
    assert by_command.correlation_id == "req-1" and by_command.causation_id is None


async def test_a_stream_is_opened_once_by_its_first_event(any_store: StreamStore) -> None:
    """`OPENING`: the same first event twice is stored once; another one is `StreamTaken`."""
    app, stream = _stream()
    first = ApplicationDisabled(application_id=app)
    opened = await execute(any_store, stream, OPENING, first, Metadata())
    again = await execute(any_store, stream, OPENING, first, Metadata())
    assert opened.events == (first,) and again.events == ()
    with pytest.raises(StreamTaken):
        await execute(
            any_store, stream, OPENING, ApplicationEnabled(application_id=app), Metadata()
        )
    assert [h.event for h in await any_store.read_stream(stream)] == [first]


class CountingReads:
    """A store that counts `read_stream` calls."""

    def __init__(self, store: Any) -> None:
        self.store, self.reads = store, 0

    async def read_stream(self, stream_id: str, **kwargs: Any) -> list[RecordedEvent]:
        self.reads += 1
        history: list[RecordedEvent] = await self.store.read_stream(stream_id, **kwargs)
        return history

    async def append(self, stream_id: str, events: Sequence[NewEvent], **kwargs: Any) -> Any:
        return await self.store.append(stream_id, events, **kwargs)


async def test_a_known_stream_is_decided_on_without_reading_it(any_store: StreamStore) -> None:
    """`known`, right: no read; the append expects the known version."""
    app, stream = _stream()
    first = await execute(any_store, stream, SWITCH, Switch(app, disable=True), Metadata())
    counting = CountingReads(any_store)
    done = await execute(
        counting, stream, SWITCH, Switch(app, disable=False), Metadata(), known=first.after
    )
    assert counting.reads == 0
    assert done.before == first.after and done.after.version == 1 and done.after.state is False


async def test_a_stale_known_stream_is_read_and_decided_on_as_it_is(
    any_store: StreamStore,
) -> None:
    """`known` that the stream has moved past: the append at its version finds the stream
    moved and writes nothing; the decision is made again on the stream as read. A decision
    to write nothing, or a rejection, made on the assumption is made again as read too."""
    app, stream = _stream()
    await execute(any_store, stream, SWITCH, Switch(app, disable=True), Metadata())
    unopened: Folded[bool | None] = Folded(None)  # as if the stream had no event yet
    counting = CountingReads(any_store)
    # Conflict: "disable" on the unopened stream would append at NO_STREAM; it is disabled.
    done = await execute(
        counting, stream, SWITCH, Switch(app, disable=True), Metadata(), known=unopened,
        max_attempts=1,
    )  # fmt: skip
    assert counting.reads == 1 and done.events == () and done.before.version == 0
    # Rejected on the assumption ("nothing to enable"): as read, it is enabled.
    done = await execute(
        counting, stream, SWITCH, Switch(app, disable=False), Metadata(), known=unopened
    )
    assert counting.reads == 2 and done.after.state is False and done.after.version == 1
    # Nothing to do on the assumption (enabled already, it says): as read, it is disabled.
    said_enabled: Folded[bool | None] = Folded(False, done.after.version - 1, 0)
    await execute(any_store, stream, SWITCH, Switch(app, disable=True), Metadata())
    done = await execute(
        counting, stream, SWITCH, Switch(app, disable=False), Metadata(), known=said_enabled
    )
    assert counting.reads == 3 and done.after.state is False and done.after.version == 3
    history = [h.event for h in await any_store.read_stream(stream)]
    assert [type(e).__name__ for e in history] == [
        "ApplicationDisabled", "ApplicationEnabled", "ApplicationDisabled", "ApplicationEnabled",
    ]  # fmt: skip
