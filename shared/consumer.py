"""The consumer runtime: durable pull consumers that handle each event once.

For every message: decode it; open a transaction; skip it if the inbox says
this consumer already handled its event id; otherwise run the handler on the
transaction's connection and record the event id in the inbox, then commit,
then `ack_sync`. A crash between commit and ack means a redelivery, which the
inbox recognises and acknowledges without running the handler again.

Failures: a message that can never be handled (garbage, unknown type) goes to
the dead-letter table at once and is terminated; any other failure is nak'ed
with back-off, and after `max_deliver` deliveries it is dead-lettered too.
The consumer keeps going in every case. Redelivery limits are ours, not the
server's: with a server-side `max_deliver` the last failure would vanish
without a dead-letter record.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import msgspec
import structlog
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js import api as js_api
from opentelemetry import trace
from structlog.contextvars import bound_contextvars

from shared import tracing
from shared.db import CONNECTION_ERRORS
from shared.errors import MessageError
from shared.events.base import RecordedEvent
from shared.events.codec import EventRegistry
from shared.messaging import event_from_message
from shared.subjects import Subjects

log = structlog.get_logger("slipway.consumer")
_tracer = tracing.tracer("slipway.consumer")

Handler = Callable[[RecordedEvent, asyncpg.Connection], Awaitable[None]]
"""Handles one event inside the consumer's transaction; raise to retry."""

_ALREADY_HANDLED = (
    "SELECT EXISTS (SELECT 1 FROM consumer_inbox WHERE consumer = $1 AND event_id = $2)"
)
_RECORD_HANDLED = "INSERT INTO consumer_inbox (consumer, event_id) VALUES ($1, $2)"
_DEAD_LETTER = """
INSERT INTO dead_letters (consumer, subject, stream_seq, deliveries, headers, data, error)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)
ON CONFLICT (consumer, subject, stream_seq) DO NOTHING
"""


class ConsumerStats(msgspec.Struct):
    handled: int = 0
    skipped_duplicates: int = 0
    retried: int = 0
    dead_lettered: int = 0


class EventConsumer:
    """One durable pull consumer on the events stream, for one (service, purpose)."""

    def __init__(
        self,
        *,
        name: str,
        js: JetStreamContext,
        pool: asyncpg.Pool,
        registry: EventRegistry,
        subjects: Subjects,
        handler: Handler,
        filter_subjects: Sequence[str] | None = None,
        batch_size: int = 64,
        fetch_timeout_s: float = 1.0,
        ack_wait_s: float = 30.0,
        max_deliver: int = 5,
        backoff_s: Sequence[float] = (0.5, 2.0, 10.0, 30.0),
        after_commit: Callable[[RecordedEvent], Awaitable[None]] | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.name = name
        self.js = js
        self.pool = pool
        self.registry = registry
        self.subjects = subjects
        self.handler = handler
        self.filter_subjects = list(filter_subjects or [subjects.all_events])
        self.batch_size = batch_size
        self.fetch_timeout_s = fetch_timeout_s
        self.ack_wait_s = ack_wait_s
        self.max_deliver = max_deliver
        self.backoff_s = tuple(backoff_s)
        self.after_commit = after_commit
        self.tracer = tracer or _tracer
        self.stats = ConsumerStats()
        self.in_flight = False

    async def ensure(self) -> None:
        """Create or update the durable consumer (idempotent; every replica calls it)."""
        config = js_api.ConsumerConfig(
            durable_name=self.name,
            ack_policy=js_api.AckPolicy.EXPLICIT,
            deliver_policy=js_api.DeliverPolicy.ALL,
            ack_wait=self.ack_wait_s,
            max_deliver=-1,
            max_ack_pending=max(1000, self.batch_size * 4),
            filter_subject=self.filter_subjects[0] if len(self.filter_subjects) == 1 else None,
            filter_subjects=self.filter_subjects if len(self.filter_subjects) > 1 else None,
        )
        await self.js.add_consumer(self.subjects.events_stream, config)

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and handle batches until `stop` is set; the current batch is finished first."""
        await self.ensure()
        subscription = await self.js.pull_subscribe_bind(
            durable=self.name, stream=self.subjects.events_stream
        )
        try:
            while not stop.is_set():
                try:
                    messages = await subscription.fetch(
                        self.batch_size, timeout=self.fetch_timeout_s
                    )
                except (NatsTimeoutError, TimeoutError):
                    continue
                self.in_flight = True
                try:
                    for message in messages:
                        await self.handle_message(message)
                finally:
                    self.in_flight = False
        finally:
            await subscription.unsubscribe()

    async def handle_message(self, message: Msg) -> None:
        """Handle one delivery; never raises for a bad message or a failing handler."""
        deliveries = message.metadata.num_delivered or 1
        try:
            event = event_from_message(message.headers, message.data, self.registry)
        except MessageError as exc:
            await self._dead_letter(message, deliveries, f"undecodable: {exc}")
            return
        with (
            bound_contextvars(
                event_id=str(event.event_id), stream_id=event.stream_id, consumer=self.name
            ),
            self.tracer.start_as_current_span(
                f"{self.name} handle {event.event_type}",
                context=tracing.extract(message.headers),
                kind=trace.SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "nats",
                    "messaging.destination.name": message.subject,
                    "slipway.event_id": str(event.event_id),
                    "slipway.event_type": event.event_type,
                },
            ) as span,
        ):
            try:
                handled = await self._handle_once(event)
            except Exception as exc:  # noqa: BLE001 - the top of the message loop: log once, nak
                span.record_exception(exc)
                span.set_status(trace.StatusCode.ERROR)
                await self._failed(message, event, deliveries, exc)
                return
            if handled and self.after_commit is not None:
                await self.after_commit(event)
            await message.ack_sync()
            if handled:
                self.stats.handled += 1
                log.debug("event_handled", event_type=event.event_type)
            else:
                self.stats.skipped_duplicates += 1
                log.info("duplicate_delivery_skipped", event_type=event.event_type)

    async def _handle_once(self, event: RecordedEvent) -> bool:
        """Run the handler and record it, in one transaction; False if it had already run."""
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(_ALREADY_HANDLED, self.name, event.event_id):
                return False
            await self.handler(event, conn)
            # Recorded after the handler, so the handler's own append is this
            # transaction's first write (see the per-stream order guard in the store).
            await conn.execute(_RECORD_HANDLED, self.name, event.event_id)
        return True

    async def _failed(
        self, message: Msg, event: RecordedEvent, deliveries: int, exc: Exception
    ) -> None:
        if isinstance(exc, MessageError) or deliveries >= self.max_deliver:
            await self._dead_letter(message, deliveries, f"{type(exc).__name__}: {exc}")
            return
        delay = self.backoff_s[min(deliveries - 1, len(self.backoff_s) - 1)]
        self.stats.retried += 1
        log.warning(
            "event_handler_failed",
            event_type=event.event_type,
            deliveries=deliveries,
            retry_in_s=delay,
            error=f"{type(exc).__name__}: {exc}",
        )
        await message.nak(delay=delay)

    async def _dead_letter(self, message: Msg, deliveries: int, reason: str) -> None:
        """Keep the whole message in `dead_letters`, then stop its redelivery."""
        headers = json.dumps(dict(message.headers or {}))
        stream_seq = message.metadata.sequence.stream if message.metadata.sequence else None
        try:
            await self.pool.execute(
                _DEAD_LETTER,
                self.name,
                message.subject,
                stream_seq,
                deliveries,
                headers,
                message.data,
                reason,
            )
        except CONNECTION_ERRORS as exc:
            # Without its record the message must not be dropped: let it come back.
            log.warning("dead_letter_not_recorded", error=str(exc))
            await message.nak(delay=self.backoff_s[0])
            return
        self.stats.dead_lettered += 1
        log.error(
            "message_dead_lettered", subject=message.subject, reason=reason, deliveries=deliveries
        )
        await message.term()
