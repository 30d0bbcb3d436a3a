"""One transaction of a consumer: the log's copy of each delivered event, the inbox, the handler.

For a batch of deliveries, in one transaction: re-read each event by id from
the log, with whether the inbox says this consumer already handled it (one
query, indexed on `events_event_id_unique` and the inbox's key); skip those;
run the handler for each of the others on the transaction's connection, with
the stored event; record their ids in the inbox. The caller commits by
leaving the transaction and then settles the messages
(`shared.consumer.settling`).

The log, not the message, is what a handler acts on. A message whose event is
not in the log, or is there under another stream, version or type, was not
published by the relay: it is returned as forged, with why, and causes
nothing (DESIGN §14: NATS credentials can leak; the log's append rules cannot
be bypassed from the wire).

Slow work (git, rendering) must not run in a transaction that has already
written: it would hold back the log's commit horizon that readers wait for. A
handler whose slow work was done beforehand (a consumer's `prepare` hook) can
share a transaction with others; one that finds it must do slow work after all
asks `first_in_transaction()`, and when others were handled before it raises
`HandleAlone`: the batch rolls back and the consumer handles that event in a
transaction of its own, where it is first.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol

import asyncpg
from opentelemetry import trace
from structlog.contextvars import bound_contextvars

from shared import tracing
from shared.consumer import tables
from shared.db import CONNECTION_ERRORS
from shared.errors import SlipwayError, Unavailable
from shared.eventlog import EventStore
from shared.events.base import RecordedEvent

__all__ = [
    "Delivered",
    "HandleAlone",
    "Handled",
    "Handler",
    "HandlerFailed",
    "events_in_transaction",
    "first_in_transaction",
    "handle_once",
    "logged_unhandled",
]

Handler = Callable[[RecordedEvent, asyncpg.Connection], Awaitable[None]]
"""Handles one event inside the consumer's transaction; raise to retry."""

Handled = tuple[dict[uuid.UUID, RecordedEvent], dict[uuid.UUID, str]]
"""The events handled now, as the log stores them; the forged ones, each with why."""


class Delivered(Protocol):
    """What handling needs of a delivery: a NATS message, or a dead letter being redriven."""

    @property
    def subject(self) -> str:
        """The subject it was published on."""
        ...

    @property
    def headers(self) -> dict[str, str] | None:
        """Its headers: the event's envelope and trace context."""
        ...


class HandlerFailed(SlipwayError):
    """The handler raised for the batch's event at `index`; the batch's transaction rolled back."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error


class HandleAlone(SlipwayError):
    """A handler needs slow work that must not run after others' writes in its transaction:
    the consumer handles its event again in a transaction of its own."""


_handled_before: ContextVar[int] = ContextVar("slipway_consumer_handled_before", default=0)


_in_transaction: ContextVar[tuple[RecordedEvent, ...]] = ContextVar(
    "slipway_consumer_in_transaction", default=()
)


def events_in_transaction() -> tuple[RecordedEvent, ...]:
    """The events the consumer's current transaction handles, in order (empty outside one):
    a handler that locks per key takes the locks of all of them at its first event. Asked
    of the transaction rather than kept from `prepare`, because the consumer may prepare
    the next batch while this one's transaction runs."""
    return _in_transaction.get()


@contextmanager
def _handling(events: tuple[RecordedEvent, ...]) -> Iterator[None]:
    """`events_in_transaction()` answers `events` inside."""
    token = _in_transaction.set(events)
    try:
        yield
    finally:
        _in_transaction.reset(token)


def first_in_transaction() -> bool:
    """Whether no other event was handled before this one in the consumer's transaction
    (True outside a consumer: a sweep's own transaction is its own)."""
    return _handled_before.get() == 0


async def handle_once(
    batch: Sequence[tuple[Delivered, RecordedEvent]],
    *,
    consumer: str,
    store: EventStore,
    handler: Handler,
    tracer: trace.Tracer,
) -> Handled:
    """Run `handler` for each event of `batch` not handled yet and record them, in one
    transaction; HandlerFailed (everything rolled back) if the handler raises."""
    async with store.pool.acquire() as conn, conn.transaction():
        ids = [event.event_id for _, event in batch]
        try:
            stored, seen = await tables.logged_and_handled(conn, consumer, ids)
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"read the log: database connection lost: {exc}") from exc
        forged = {
            claimed.event_id: why
            for _, claimed in batch
            if (why := _unlike_log(claimed, stored.get(claimed.event_id))) is not None
        }
        handled: dict[uuid.UUID, RecordedEvent] = {}
        to_handle = tuple(
            claimed
            for _, claimed in batch
            if claimed.event_id not in seen and claimed.event_id not in forged
        )
        with _handling(to_handle):
            for index, (message, claimed) in enumerate(batch):
                if (
                    claimed.event_id in seen
                    or claimed.event_id in forged
                    or claimed.event_id in handled
                ):
                    continue
                # The handler sees the stored event: the message body is only a claim.
                event = store.decode_row(stored[claimed.event_id])
                handled[event.event_id] = event
                with (
                    bound_contextvars(
                        event_id=str(event.event_id), stream_id=event.stream_id, consumer=consumer
                    ),
                    # Ends with the exception recorded if the handler raises.
                    tracer.start_as_current_span(
                        f"{consumer} handle {event.event_type}",
                        context=tracing.extract(message.headers),
                        kind=trace.SpanKind.CONSUMER,
                        attributes={
                            "messaging.system": "nats",
                            "messaging.destination.name": message.subject,
                            "slipway.event_id": str(event.event_id),
                            "slipway.event_type": event.event_type,
                        },
                    ),
                ):
                    before = _handled_before.set(len(handled) - 1)
                    try:
                        await handler(event, conn)
                    except Exception as exc:
                        raise HandlerFailed(index, exc) from exc
                    finally:
                        _handled_before.reset(before)
        # Recorded after the handlers, so the first handler's own append is this
        # transaction's first write (see the per-stream order guard in the store).
        if handled:
            await tables.record_handled(conn, consumer, list(handled))
    return handled, forged


async def logged_unhandled(
    batch: Sequence[tuple[Delivered, RecordedEvent]], *, consumer: str, store: EventStore
) -> list[RecordedEvent]:
    """The log's copies of the batch's events that `consumer` has not handled yet, forged
    ones left out: what a `prepare` hook may look at before the transaction (which checks
    it all again, as it must: another replica may handle one meanwhile)."""
    async with store.pool.acquire() as conn:
        stored, seen = await tables.logged_and_handled(
            conn, consumer, [event.event_id for _, event in batch]
        )
    events: dict[uuid.UUID, RecordedEvent] = {}
    for _, claimed in batch:
        row = stored.get(claimed.event_id)
        if row is None or claimed.event_id in seen or _unlike_log(claimed, row) is not None:
            continue
        events.setdefault(claimed.event_id, store.decode_row(row))
    return list(events.values())


def _unlike_log(claimed: RecordedEvent, stored: asyncpg.Record | None) -> str | None:
    """Why a delivered event is not the logged one with its id; None when it is."""
    if stored is None:
        return "not in the event log"
    for field in ("stream_id", "stream_version", "event_type"):
        if getattr(claimed, field) != stored[field]:
            return f"its {field} differs from the event log's"
    return None
