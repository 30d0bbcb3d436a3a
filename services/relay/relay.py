"""The relay (transactional outbox): publish every committed event to JetStream.

One relay leads at a time: the leader holds a PostgreSQL session advisory lock
on a dedicated connection, reads the log past its checkpoint in commit-safe
order on that same connection, publishes the batch with up to
`max_in_flight` PubAcks outstanding, and only then stores the checkpoint —
again on that connection. If the leader dies (even `kill -9`), PostgreSQL
drops its session and the lock with it; a standby takes over from the last
checkpoint. Events published after that checkpoint are published again, and
JetStream drops them by `Nats-Msg-Id`; a consumer that still sees one (after
the duplicate window) skips it by event id. Nothing is lost: the checkpoint
never passes an event whose PubAck has not arrived.

Fencing: the checkpoint write happens on the lock-holding session, so a
leader that lost its session cannot move the checkpoint.

The checkpoint is committed without waiting for its WAL flush
(`synchronous_commit = off` on the leader's session): the relay reads the log
again right after it, so a flush there would sit in every batch's round, and
under load a flush takes milliseconds. Losing it costs nothing the design does
not already allow: a PostgreSQL crash can take back only the last fraction of
a second of checkpoints (the WAL writer flushes them within
`3 × wal_writer_delay`, and any append's flush carries them), the leader then
starts from an older checkpoint and publishes those events again, which
JetStream drops by `Nats-Msg-Id` and consumers skip by event id — as after a
leader's own crash. The checkpoint never passes an event without a PubAck,
flushed or not. A transaction that appends skipped events' records to the log
commits flushed, as every append does: an event may not be seen before it is
durable.

Payloads are published as they may leave Slipway (`shared.events.outbound.public_payload`):
a field of `PRIVATE_FIELDS` (a key's hash) never travels on NATS; consumers act on the event
re-read from the log, which has it.

One bad event never halts the relay. An event NATS can never take (larger
than the server's `max_payload`, refused by JetStream with a 4xx error, or on
a subject the relay's NATS user is denied) is skipped: an `EventPublishFailed`
is appended to the stream `relay-<name>` in the same transaction that moves
the checkpoint past it (so the record is in the log, the source of truth, next
to the event itself, and is published like any other event; not a dead-letter
table, which would be a second place to look), with an error log line and the
`skipped` count (metric `slipway_relay_skipped_events`). Everything else
(timeouts, no responders, a lost connection) is transient: the relay steps
down and retries the batch.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Sequence
from typing import cast

import asyncpg
import structlog
from nats.errors import Error as NatsError
from nats.errors import MaxPayloadError
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import APIError
from nats.js.errors import Error as JetStreamError

from shared.aio import sleep_or_stop
from shared.db import (
    CONNECTION_ERRORS,
    DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_S,
    DEFAULT_STATEMENT_TIMEOUT_S,
    connect,
)
from shared.errors import Unavailable
from shared.eventlog.position import START, LogPosition
from shared.eventlog.statements import READ_ALL
from shared.eventlog.store import ANY, EventStore, position_of
from shared.events.base import NewEvent
from shared.events.catalog import EventPublishFailed, default_registry
from shared.events.codec import tag_of
from shared.events.outbound import public_payload
from shared.events.streams import relay_stream
from shared.messaging import headers_for
from shared.subjects import Subjects

log = structlog.get_logger("slipway.relay")

# Failures after which a relay steps down, waits and competes for leadership again.
_RETRYABLE: tuple[type[BaseException], ...] = (Unavailable, JetStreamError, *CONNECTION_ERRORS)

_LOAD_CHECKPOINT = "SELECT tx_id, position FROM checkpoints WHERE name = $1"
# The leader's session commits its checkpoints asynchronously; the transaction that appends
# skipped events' records to the log commits as every append does, flushed.
_CHECKPOINTS_UNFLUSHED = "SET synchronous_commit = off"
_RECORDS_FLUSHED = "SET LOCAL synchronous_commit = on"
_SAVE_CHECKPOINT = """
INSERT INTO checkpoints (name, tx_id, position) VALUES ($1, $2::xid8, $3)
ON CONFLICT (name) DO UPDATE
  SET tx_id = excluded.tx_id, position = excluded.position, updated_at = clock_timestamp()
"""


class Relay:
    """Leader-elected publisher of the log to the events stream."""

    def __init__(
        self,
        *,
        database_url: str,
        js: JetStreamContext,
        subjects: Subjects,
        schema: str = "slipway",
        name: str = "relay",
        batch_size: int = 1000,
        max_in_flight: int = 512,
        idle_sleep_s: float = 0.005,
        max_idle_sleep_s: float = 0.025,
        standby_poll_s: float = 0.5,
        publish_timeout_s: float = 10.0,
        statement_timeout_s: float = DEFAULT_STATEMENT_TIMEOUT_S,
        idle_in_transaction_timeout_s: float = DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_S,
    ) -> None:
        self.database_url = database_url
        self.js = js
        self.subjects = subjects
        self.schema = schema
        self.name = name
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self.idle_sleep_s = idle_sleep_s
        self.max_idle_sleep_s = max(max_idle_sleep_s, idle_sleep_s)
        self.standby_poll_s = standby_poll_s
        self.publish_timeout_s = publish_timeout_s
        self.statement_timeout_s = statement_timeout_s
        self.idle_in_transaction_timeout_s = idle_in_transaction_timeout_s
        self.is_leader = False
        self.published = 0
        self.duplicates = 0
        self.skipped = 0
        self._lock_key = _lock_key(schema, name)
        self._failures_stream = relay_stream(name)
        # Appends only on the leader's connection (`conn=`), so the store needs no pool.
        self._log = EventStore(cast(asyncpg.Pool, None), default_registry())

    async def run(self, stop: asyncio.Event) -> None:
        """Compete for leadership and relay while leader, until `stop` is set."""
        failures = 0
        while not stop.is_set():
            try:
                await self._run_session(stop)
                failures = 0
            except _RETRYABLE as exc:
                failures += 1
                delay = min(0.1 * 2**failures, 5.0)
                log.warning("relay_interrupted", error=str(exc), retry_in_s=delay)
                await sleep_or_stop(stop, delay)
            finally:
                self.is_leader = False

    async def _run_session(self, stop: asyncio.Event) -> None:
        conn = await connect(
            self.database_url,
            schema=self.schema,
            statement_timeout_s=self.statement_timeout_s,
            idle_in_transaction_timeout_s=self.idle_in_transaction_timeout_s,
        )
        try:
            while not stop.is_set():
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_key):
                    self.is_leader = True
                    log.info("relay_leading", relay=self.name)
                    await self._lead(conn, stop)
                    return
                await sleep_or_stop(stop, self.standby_poll_s)
        finally:
            # Closing the session releases the advisory lock for the next leader.
            await conn.close(timeout=2)

    async def _lead(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        # The checkpoint's commits do not wait for the WAL flush (see the module docstring):
        # a batch's round is a read, the PubAcks and one round trip, not a disk flush too.
        await conn.execute(_CHECKPOINTS_UNFLUSHED)
        row = await conn.fetchrow(_LOAD_CHECKPOINT, self.name)
        position = START if row is None else LogPosition(row["tx_id"], row["position"])
        idle = 0
        while not stop.is_set():
            rows = await conn.fetch(
                READ_ALL, position.tx_id, position.global_position, self.batch_size
            )
            if not rows:
                idle += 1
                await sleep_or_stop(stop, self._idle_sleep(idle))
                continue
            idle = 0
            failed = await self._publish(rows)
            # A record of a skipped record would be skipped in turn, for ever: those are only
            # logged and counted.
            records = [
                f
                for f in failed
                if isinstance(f.event, EventPublishFailed) and f.event.event_type != _FAILURE_TAG
            ]
            position = position_of(rows[-1])
            checkpoint = (_SAVE_CHECKPOINT, self.name, position.tx_id, position.global_position)
            if not records:
                # One statement commits alone: BEGIN and COMMIT would be two more round
                # trips per batch, and the relay's batches are small while events trickle.
                await conn.execute(*checkpoint)
            else:
                async with conn.transaction():
                    # The log's own events are durable before anyone can read them.
                    await conn.execute(_RECORDS_FLUSHED)
                    await self._log.append(
                        self._failures_stream, records, expected_version=ANY, conn=conn
                    )
                    await conn.execute(*checkpoint)
            self.skipped += len(failed)

    def _idle_sleep(self, empty_reads: int) -> float:
        """The wait after `empty_reads` empty reads in a row: `idle_sleep_s` at first, doubling
        up to `max_idle_sleep_s`. While events flow the relay polls every few milliseconds;
        a quiet log is not read 200 times a second (most of an idle relay's CPU, and
        PostgreSQL's, went there)."""
        backed_off: float = self.idle_sleep_s * 2.0 ** min(empty_reads - 1, 16)
        return min(backed_off, self.max_idle_sleep_s)

    async def _publish(self, rows: Sequence[asyncpg.Record]) -> list[NewEvent]:
        """Publish `rows` in log order and wait for every PubAck; what NATS can never take is
        skipped and returned as `EventPublishFailed` events to record."""
        failed: list[NewEvent] = []
        for start in range(0, len(rows), self.max_in_flight):
            pending: list[tuple[asyncpg.Record, asyncio.Future[PubAck]]] = []
            for row in rows[start : start + self.max_in_flight]:
                subject = self.subjects.event(row["stream_id"], row["event_type"])
                payload, headers = _payload(row), headers_for(row)
                # The server counts headers too, and answers an oversized message by closing
                # the connection (the client checks only the payload): so check both here.
                size = len(payload) + _headers_size(headers)
                limit = self._max_payload()
                if size > limit:
                    failed.append(
                        self._skip(
                            row,
                            size,
                            f"payload and headers {size} bytes exceed the "
                            f"NATS server's max_payload of {limit}",
                        )
                    )
                    continue
                try:
                    future = await self.js.publish_async(subject, payload, headers=headers)
                except MaxPayloadError:
                    failed.append(self._skip(row, size, f"over the max_payload of {limit}"))
                    continue
                pending.append((row, future))
            # Wait for every PubAck; `wait` (unlike `wait_for` on a gather) keeps the answers
            # that did arrive when the time is up.
            futures = [f for _, f in pending]
            if futures:
                await asyncio.wait(futures, timeout=self.publish_timeout_s)
            unanswered = []
            for row, future in pending:
                if not future.done():
                    future.cancel()
                    unanswered.append(row)
                elif (error := future.exception()) is not None:
                    if not _is_permanent(error):
                        raise Unavailable(
                            f"publish of event {row['event_id']}: {error!r}"
                        ) from error
                    failed.append(self._refused(row, error))
                else:
                    self._acked(future.result())
            # nats-py never resolves an async publish that JetStream answers with an error
            # (its reply handler raises instead), so a refusal looks like silence: publish the
            # unanswered one by one and wait, which reports it. Same Nats-Msg-Id: no duplicate.
            for row in unanswered:
                failed.extend(await self._publish_one(row))
        return failed

    async def _publish_one(self, row: asyncpg.Record) -> list[NewEvent]:
        subject = self.subjects.event(row["stream_id"], row["event_type"])
        try:
            ack = await self.js.publish(
                subject,
                _payload(row),
                timeout=self.publish_timeout_s,
                headers=headers_for(row),
            )
        except APIError as exc:
            if not _is_permanent(exc):
                raise Unavailable(f"publish of event {row['event_id']}: {exc!r}") from exc
            return [self._refused(row, exc)]
        except (TimeoutError, NatsError) as exc:
            # A subject the relay's NATS user may not publish to gets no answer, only an
            # asynchronous -ERR that the client keeps as its last error: that never heals.
            denied = self._denied(subject)
            if denied:
                size = len(_payload(row)) + _headers_size(headers_for(row))
                return [self._skip(row, size, denied)]
            raise Unavailable(
                f"no PubAck for event {row['event_id']} within {self.publish_timeout_s}s: {exc!r}"
            ) from exc
        self._acked(ack)
        return []

    def _acked(self, ack: PubAck) -> None:
        self.published += 1
        self.duplicates += int(bool(ack.duplicate))

    def _refused(self, row: asyncpg.Record, error: BaseException) -> NewEvent:
        size = len(_payload(row)) + _headers_size(headers_for(row))
        return self._skip(row, size, f"JetStream refused it: {error}")

    def _denied(self, subject: str) -> str:
        """The server's permissions violation for `subject`, if it reported one ("" if not)."""
        error = self.js._nc.last_error
        text = str(error) if error is not None else ""
        # nats-server spells it "Permissions Violation" or, newer, "permissions violation".
        denied = "permissions violation" in text.lower() and f'"{subject}"' in text
        return text if denied else ""

    def _max_payload(self) -> int:
        # What the server announced in INFO; the JetStream context keeps its client private.
        return int(self.js._nc.max_payload)

    def _skip(self, row: asyncpg.Record, size: int, reason: str) -> NewEvent:
        log.error(
            "relay_event_skipped",
            relay=self.name,
            event_id=str(row["event_id"]),
            event_type=row["event_type"],
            stream_id=row["stream_id"],
            global_position=row["global_position"],
            size_bytes=size,
            reason=reason,
        )
        failure = EventPublishFailed(
            event_id=str(row["event_id"]),
            event_type=row["event_type"],
            stream_id=row["stream_id"],
            global_position=row["global_position"],
            size_bytes=size,
            reason=reason,
        )
        # One id per skipped event: a relay that dies before its checkpoint moves and skips the
        # same event again after a restart appends nothing new (an idempotent retry).
        return NewEvent(event=failure, event_id=uuid.uuid5(_FAILURE_IDS, str(row["event_id"])))


_FAILURE_TAG = tag_of(EventPublishFailed)
_FAILURE_IDS = uuid.UUID("5d0c7f3e-2b8e-4c51-9a0e-7d3f1c2b8a61")


def _payload(row: asyncpg.Record) -> bytes:
    """What is published of a row's payload: without its private fields (a key's hash never
    travels on NATS, where the read-only subscriber identity could read it)."""
    return public_payload(row["event_type"], bytes(row["payload"]))


def _headers_size(headers: dict[str, str]) -> int:
    r"""Bytes of `headers` on the wire: `NATS/1.0\r\n`, `key: value\r\n` each, `\r\n`."""
    return 12 + sum(len(k.encode()) + len(v.encode()) + 4 for k, v in headers.items())


def _is_permanent(exc: BaseException) -> bool:
    """Whether a publish error would come back on every retry: JetStream's 4xx refusals
    (e.g. over the stream's max_msg_size). No responders, 503s and timeouts pass."""
    return isinstance(exc, APIError) and exc.code is not None and 400 <= exc.code < 500


def _lock_key(schema: str, name: str) -> int:
    digest = hashlib.blake2b(f"slipway-relay:{schema}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
