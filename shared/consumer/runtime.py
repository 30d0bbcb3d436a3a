"""The consumer runtime: durable pull consumers that handle each event once.

For every fetched batch: decode it; open one transaction; skip the events the
inbox says this consumer already handled; run the handler for each of the
others on the transaction's connection and record their event ids in the
inbox, then commit, then ack each message (sent without waiting for the
server's confirmation: the next fetch goes out with the acks). A crash (or a
lost ack) between commit and ack means a redelivery, which the inbox
recognises and acknowledges without running the handler again. One
transaction per batch rather than per message: the inbox lookup, the inbox
insert, the commit and the server's ack confirmation were each paid per
message before, which capped a consumer at a few hundred events/s
(benchmarks/eventlog.py).

The transaction itself — the log's copy of each event (a message whose event
the log does not hold as delivered is forged, and causes nothing), the inbox,
the handler — is `shared.consumer.handling`; what becomes of each message
afterwards (ack, nak with back-off, dead letter, term) is
`shared.consumer.settling`, with the failure policy of `shared.consumer.failures`
(outages are waited out, not counted). The consumer keeps going in every case.

A batch's messages get `in_progress()` every `ack_wait_s / 3` while it is
handled (a slow git fetch or render), so the server does not redeliver them
to another replica while the handler still runs.

Redrive (`slipway deadletters redrive`, migration 0009): the CLI marks a
dead letter `redrive_requested_at`; every `redrive_poll_s` the consumer that
wrote it takes its own requests and runs each stored event through the same
path as a delivery — one transaction with the inbox, so an event it had
handled after all is skipped, not handled twice — then sets `redriven_at`.
Nothing is republished to NATS, so no other consumer sees the event again. A
real failure clears the request and keeps why in `redrive_error`; an outage
leaves the request for the next poll.

Prepared batches: a handler whose slow work (git, rendering) must stay out of
transactions that have written may come with a `prepare` hook. Before each
batch's transaction the consumer reads the batch's unhandled events from the
log (forged ones left out) and awaits `prepare(events)` outside any
transaction; the hook does the slow work and keeps the results for the
handler, which then needs none in the shared transaction. What it could not
prepare the handler may still do when it is first in its transaction;
otherwise it raises `HandleAlone` and that event gets a transaction of its own
(`shared.consumer.handling`). Such a consumer sorts each batch by
`ordering_key` (stably: one key's events keep their order), so handlers that
lock per key take their locks in the same order on every replica and two
replicas' batch transactions cannot deadlock.

The inbox and dead-letter tables, and their pruning: `shared.consumer.tables`;
the counters: `shared.consumer.stats`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import structlog
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js import api as js_api
from opentelemetry import trace

from shared import tracing
from shared.consumer import tables
from shared.consumer.failures import DATABASE_UNAVAILABLE, NATS_RECONNECTING, is_unavailable
from shared.consumer.fetching import fetch
from shared.consumer.handling import (
    Delivered,
    HandleAlone,
    Handled,
    Handler,
    HandlerFailed,
    handle_once,
    logged_unhandled,
)
from shared.consumer.settling import Settlement, deliveries
from shared.consumer.stats import ConsumerStats
from shared.errors import MessageError
from shared.eventlog import EventStore
from shared.events.base import Event, RecordedEvent
from shared.events.codec import EventRegistry, tag_of
from shared.messaging import event_from_message
from shared.settings import DEFAULT_INBOX_RETENTION_S
from shared.subjects import Subjects

__all__ = ["ConsumerStats", "EventConsumer", "Handler", "Prepare", "subject_filters"]

Prepare = Callable[[Sequence[RecordedEvent]], Awaitable[None]]
"""Does a batch's slow work before its transaction (see "Prepared batches" above)."""

log = structlog.get_logger("slipway.consumer")
_tracer = tracing.tracer("slipway.consumer")


def subject_filters(subjects: Subjects, handles: Sequence[type[Event]] | None) -> list[str]:
    """The NATS subject filters of a consumer that handles the event classes `handles`
    (None: every event): one per class, from its wire tag, so a filter can never name
    an event the consumer does not declare, nor miss one it does."""
    if handles is None:
        return [subjects.all_events]
    if not handles:
        raise ValueError("a consumer handles at least one event class (None: every event)")
    return [subjects.events_of_type(tag_of(event_type)) for event_type in dict.fromkeys(handles)]


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
        handles: Sequence[type[Event]] | None = None,
        batch_size: int = 64,
        events_per_transaction: int = 64,
        fetch_timeout_s: float = 1.0,
        ack_wait_s: float = 30.0,
        max_deliver: int = 5,
        backoff_s: Sequence[float] = (0.5, 2.0, 10.0, 30.0),
        after_commit: Callable[[RecordedEvent], Awaitable[None]] | None = None,
        tracer: trace.Tracer | None = None,
        concurrency: int = 1,
        ordering_key: Callable[[RecordedEvent], str] | None = None,
        inbox_retention_s: float = DEFAULT_INBOX_RETENTION_S,
        inbox_prune_every_s: float = 3600.0,
        inbox_prune_batch: int = 1000,
        redrive_poll_s: float = 5.0,
        prepare: Prepare | None = None,
    ) -> None:
        self.name = name
        self.js = js
        self.pool = pool
        self.registry = registry
        self.subjects = subjects
        self.handler = handler
        self.handles = tuple(dict.fromkeys(handles)) if handles is not None else None
        self.filter_subjects = subject_filters(subjects, self.handles)
        self.batch_size = batch_size
        if events_per_transaction < 1:
            raise ValueError("events_per_transaction must be ≥ 1")
        self.events_per_transaction = events_per_transaction
        self.fetch_timeout_s = fetch_timeout_s
        self.ack_wait_s = ack_wait_s
        self.max_deliver = max_deliver
        self.backoff_s = tuple(backoff_s)
        self.after_commit = after_commit
        if concurrency < 1 or (concurrency > 1 and ordering_key is None):
            raise ValueError("concurrency must be ≥ 1, and above 1 needs an ordering_key")
        self.concurrency = concurrency
        if prepare is not None and ordering_key is None:
            raise ValueError("a prepare hook needs an ordering_key (the batch's lock order)")
        self.ordering_key = ordering_key
        self.prepare = prepare
        self.tracer = tracer or _tracer
        self.stats = ConsumerStats()
        self.in_flight = False
        self.inbox_retention_s = inbox_retention_s
        self.inbox_prune_every_s = inbox_prune_every_s
        self.inbox_prune_batch = inbox_prune_batch
        self.redrive_poll_s = redrive_poll_s
        self._log = EventStore(pool, registry)
        self._settlement = Settlement(
            consumer=name, pool=pool, stats=self.stats, max_deliver=max_deliver, backoff_s=backoff_s
        )

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
        loop = asyncio.get_running_loop()
        next_prune = next_redrive = loop.time()
        try:
            while not stop.is_set():
                if loop.time() >= next_prune:
                    next_prune = loop.time() + self.inbox_prune_every_s
                    await self._prune_inbox_logged()
                if loop.time() >= next_redrive:
                    next_redrive = loop.time() + self.redrive_poll_s
                    await self._redrive_logged()
                try:
                    messages = await fetch(subscription, self.batch_size, self.fetch_timeout_s)
                except (NatsTimeoutError, TimeoutError):
                    continue
                except NATS_RECONNECTING as exc:
                    # NATS away: the client reconnects; fetch again once it is back. (A
                    # connection closed for good still ends the consumer, and the service.)
                    log.warning("consumer_fetch_failed", consumer=self.name, error=repr(exc))
                    await asyncio.sleep(self.backoff_s[0])
                    continue
                self.in_flight = True
                heartbeat = asyncio.create_task(self._heartbeat(messages))
                try:
                    if self.concurrency == 1:
                        await self._handle_in_order(messages)
                    else:
                        await self._handle_concurrently(messages)
                finally:
                    heartbeat.cancel()
                    self.in_flight = False
        finally:
            await subscription.unsubscribe()

    async def _heartbeat(self, messages: Sequence[Msg]) -> None:
        """Tell the server the batch's unsettled messages are still being worked on."""
        while True:
            await asyncio.sleep(self.ack_wait_s / 3)
            for message in messages:
                if not message.is_acked:
                    await self._settlement.settle(message, "in_progress", message.in_progress())

    async def prune_inbox(self) -> int:
        """Delete this consumer's inbox rows older than the retention, in batches; how many."""
        total = await tables.prune_inbox(
            self.pool, self.name, self.inbox_retention_s, self.inbox_prune_batch
        )
        self.stats.inbox_pruned += total
        return total

    async def redrive_requested(self) -> int:
        """Handle the dead letters of this consumer asked for redrive; how many were settled."""
        redriven = 0
        for letter in await tables.redrive_requests(self.pool, self.name, self.batch_size):
            try:
                event = event_from_message(letter.headers, letter.data, self.registry)
                handled, forged = await self._handle_once([(letter, event)])
            except Exception as exc:  # noqa: BLE001 - recorded on the letter, or retried
                error = exc.error if isinstance(exc, HandlerFailed) else exc
                if is_unavailable(error):
                    log.warning(
                        "redrive_waits_for_dependency", dead_letter=letter.id, error=repr(error)
                    )
                    return redriven
                why = f"{type(error).__name__}: {error}"
                await tables.mark_redrive_failed(self.pool, letter.id, why)
                log.error("redrive_failed", consumer=self.name, dead_letter=letter.id, error=why)
                continue
            if event.event_id in forged:
                why = f"forged: {forged[event.event_id]}"
                await tables.mark_redrive_failed(self.pool, letter.id, why)
                log.error("redrive_failed", consumer=self.name, dead_letter=letter.id, error=why)
                continue
            logged = handled.get(event.event_id)
            if logged is not None and self.after_commit is not None:
                await self.after_commit(logged)
            # After the commit: a crash in between only redrives again, and the inbox skips it.
            await tables.mark_redriven(self.pool, letter.id)
            self.stats.redriven += 1
            redriven += 1
            log.info(
                "dead_letter_redriven",
                consumer=self.name,
                dead_letter=letter.id,
                already_handled=logged is None,
            )
        return redriven

    async def _redrive_logged(self) -> None:
        try:
            await self.redrive_requested()
        except DATABASE_UNAVAILABLE as exc:
            log.warning("redrive_poll_failed", consumer=self.name, error=repr(exc))

    async def _prune_inbox_logged(self) -> None:
        try:
            deleted = await self.prune_inbox()
        except DATABASE_UNAVAILABLE as exc:
            log.warning("inbox_prune_failed", consumer=self.name, error=repr(exc))
            return
        if deleted:
            log.info("inbox_pruned", consumer=self.name, deleted=deleted)

    async def _handle_in_order(self, messages: Sequence[Msg]) -> None:
        # Handlers that do slow I/O (git, HTTP) take one event per transaction,
        # so an open transaction never holds the log's read horizon for long.
        step = self.events_per_transaction
        for start in range(0, len(messages), step):
            await self.handle_batch(messages[start : start + step])

    async def _handle_concurrently(self, messages: Sequence[Msg]) -> None:
        """Up to `concurrency` keys at once; the events of one key in their order.

        Handlers that wait on I/O (the planner's git) otherwise leave the
        process idle between events that do not depend on each other.
        """
        assert self.ordering_key is not None
        groups: dict[str, list[Msg]] = {}
        for message in messages:
            try:
                event = event_from_message(message.headers, message.data, self.registry)
                key = self.ordering_key(event)
            except MessageError:
                key = ""  # handle_batch dead-letters it
            groups.setdefault(key, []).append(message)
        slots = asyncio.Semaphore(self.concurrency)

        async def handle_group(group: list[Msg]) -> None:
            async with slots:
                await self._handle_in_order(group)

        await asyncio.gather(*(handle_group(group) for group in groups.values()))

    async def handle_message(self, message: Msg) -> None:
        """Handle one delivery; never raises for a bad message or a failing handler."""
        await self.handle_batch([message])

    async def handle_batch(self, messages: Sequence[Msg]) -> None:
        """Handle deliveries in one transaction; never raises for bad messages or handlers."""
        batch: list[tuple[Msg, RecordedEvent]] = []
        for message in messages:
            try:
                batch.append(
                    (message, event_from_message(message.headers, message.data, self.registry))
                )
            except MessageError as exc:
                await self._settlement.dead_letter(
                    message, deliveries(message), f"undecodable: {exc}"
                )
        if self.prepare is not None and batch:
            await self._prepare(batch)
        while batch:
            try:
                handled, forged = await self._handle_once(batch)
            except HandlerFailed as failed:
                # Everything rolled back: the events before the failing one are handled
                # again, it is retried or dead-lettered alone (its handler is not run
                # twice for one delivery), and the rest go on as a batch.
                message, event = batch[failed.index]
                await self.handle_batch([m for m, _ in batch[: failed.index]])
                if isinstance(failed.error, HandleAlone) and len(batch) > 1:
                    # Not a failure: its slow work wants a transaction of its own.
                    self.stats.handled_alone += 1
                    log.info("event_handled_alone", consumer=self.name, why=str(failed.error))
                    await self.handle_batch([message])
                else:
                    await self._settlement.failed(message, event, deliveries(message), failed.error)
                batch = batch[failed.index + 1 :]
                continue
            except Exception as exc:  # noqa: BLE001 - the top of the message loop: log once, nak
                for message, event in batch:
                    await self._settlement.failed(message, event, deliveries(message), exc)
                return
            acks = []
            for message, claimed in batch:
                if claimed.event_id in forged:
                    await self._settlement.reject_forged(message, claimed, forged[claimed.event_id])
                    continue
                acks.append(message)
                logged = handled.get(claimed.event_id)
                if logged is not None:
                    if self.after_commit is not None:
                        await self.after_commit(logged)
                    self.stats.handled += 1
                    log.debug("event_handled", event_id=str(logged.event_id))
                else:
                    self.stats.skipped_duplicates += 1
                    log.info("duplicate_delivery_skipped", event_id=str(claimed.event_id))
            # Acks sent, not confirmed: they leave in the client's next write, with the next
            # fetch, and the loop does not wait a round trip for the server's answers (nor
            # keep a reply inbox and a timer per message). A confirmation would protect
            # nothing: the inbox committed first, so a lost ack is only a redelivery, which
            # the inbox recognises and acks without handling it again. An ack that cannot be
            # sent at all (the connection closed) is logged and counted (`settle_errors`).
            for message in acks:
                await self._settlement.settle(message, "ack", message.ack())
                self._settlement.acked(message)
            return

    async def _prepare(self, batch: list[tuple[Msg, RecordedEvent]]) -> None:
        """Sort `batch` into lock order (in place), then run the prepare hook on it."""
        assert self.prepare is not None and self.ordering_key is not None
        key = self.ordering_key
        batch.sort(key=lambda delivered: key(delivered[1]))
        try:
            events = await logged_unhandled(batch, consumer=self.name, store=self._log)
            await self.prepare(events)
        except Exception as exc:  # noqa: BLE001 - only an optimisation: the handler does the rest
            log.warning("consumer_prepare_failed", consumer=self.name, error=repr(exc))

    async def _handle_once(self, batch: Sequence[tuple[Delivered, RecordedEvent]]) -> Handled:
        """The batch's events not handled yet, handled and recorded in one transaction."""
        return await handle_once(
            batch, consumer=self.name, store=self._log, handler=self.handler, tracer=self.tracer
        )
