"""What becomes of each delivery once it was handled or failed: ack, nak, dead letter, term.

A message that can never be handled (garbage, unknown type) goes to the
dead-letter table at once and is terminated; any other failure is nak'ed with
back-off. Redelivery limits are ours, not the server's (the durable has
`max_deliver=-1`): with a server-side limit the last failure would vanish
without a dead-letter record, and the server cannot tell an outage from a bug.
Outages are waited out, not counted, and only real handler failures lead to a
dead letter (`shared.consumer.failures`).

Errors of `ack`, `nak`, `term` and `in_progress` themselves (NATS gone, the
message's reply subject expired) are logged and dropped: an unacknowledged
message only comes back, and the inbox recognises it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence

import asyncpg
import structlog
from nats.aio.msg import Msg

from shared.consumer import tables
from shared.consumer.failures import FailureCounts, backoff_delay, is_unavailable
from shared.consumer.stats import ConsumerStats
from shared.db import CONNECTION_ERRORS
from shared.errors import MessageError
from shared.events.base import RecordedEvent

__all__ = ["Settlement", "deliveries"]

log = structlog.get_logger("slipway.consumer")


class Settlement:
    """Settles one consumer's deliveries, counting into its `stats`; it remembers the real
    failures of each stream sequence until the message is acked or dead-lettered."""

    def __init__(
        self,
        *,
        consumer: str,
        pool: asyncpg.Pool,
        stats: ConsumerStats,
        max_deliver: int,
        backoff_s: Sequence[float],
    ) -> None:
        self.consumer = consumer
        self.pool = pool
        self.stats = stats
        self.max_deliver = max_deliver
        self.backoff_s = tuple(backoff_s)
        self._failures = FailureCounts()

    async def settle(self, message: Msg, what: str, call: Awaitable[object]) -> bool:
        """Await an ack/nak/term/in_progress; log its failure instead of crashing the service."""
        try:
            await call
        except Exception as exc:  # noqa: BLE001 - unsettled only means redelivered later
            self.stats.settle_errors += 1
            log.warning(
                "message_settle_failed",
                consumer=self.consumer,
                call=what,
                subject=message.subject,
                error=f"{type(exc).__name__}: {exc}",
            )
            return False
        return True

    def acked(self, message: Msg) -> None:
        """The message is done with: its real failures are forgotten."""
        if self._failures:  # most batches had none: no need to parse each reply subject
            self._failures.forget(_stream_seq(message))

    async def reject_forged(self, message: Msg, claimed: RecordedEvent, why: str) -> None:
        """Stop a message the relay did not publish; nothing of it is stored or acted on."""
        self.stats.forged += 1
        log.warning(
            "forged_event_rejected",
            subject=message.subject,
            event_id=str(claimed.event_id),
            event_type=claimed.event_type,
            reason=why,
        )
        await self.settle(message, "term", message.term())

    async def failed(
        self, message: Msg, event: RecordedEvent, deliveries: int, exc: Exception
    ) -> None:
        """Nak `message` with back-off, or dead-letter it after `max_deliver` real failures
        (at once for one that can never be handled)."""
        if is_unavailable(exc):
            # Never counted: an outage of any length ends in the event being handled.
            self.stats.retried += 1
            self.stats.waited_out += 1
            delay = backoff_delay(self.backoff_s, deliveries)
            log.warning(
                "event_handler_waits_for_dependency",
                event_type=event.event_type,
                deliveries=deliveries,
                retry_in_s=delay,
                error=f"{type(exc).__name__}: {exc}",
            )
            await self.settle(message, "nak", message.nak(delay=delay))
            return
        seq = _stream_seq(message)
        failures = self._failures.add(seq)
        if isinstance(exc, MessageError) or failures >= self.max_deliver:
            self._failures.forget(seq)
            await self.dead_letter(message, deliveries, f"{type(exc).__name__}: {exc}")
            return
        delay = backoff_delay(self.backoff_s, failures)
        self.stats.retried += 1
        log.warning(
            "event_handler_failed",
            event_type=event.event_type,
            deliveries=deliveries,
            retry_in_s=delay,
            error=f"{type(exc).__name__}: {exc}",
        )
        await self.settle(message, "nak", message.nak(delay=delay))

    async def dead_letter(self, message: Msg, deliveries: int, reason: str) -> None:
        """Keep the whole message in `dead_letters`, then stop its redelivery."""
        stream_seq = message.metadata.sequence.stream if message.metadata.sequence else None
        try:
            await tables.write_dead_letter(
                self.pool,
                consumer=self.consumer,
                subject=message.subject,
                stream_seq=stream_seq,
                deliveries=deliveries,
                headers=dict(message.headers or {}),
                data=message.data,
                reason=reason,
            )
        except CONNECTION_ERRORS as exc:
            # Without its record the message must not be dropped: let it come back.
            log.warning("dead_letter_not_recorded", error=str(exc))
            await self.settle(message, "nak", message.nak(delay=self.backoff_s[0]))
            return
        self.stats.dead_lettered += 1
        log.error(
            "message_dead_lettered", subject=message.subject, reason=reason, deliveries=deliveries
        )
        await self.settle(message, "term", message.term())


def deliveries(message: Msg) -> int:
    """How many times the server has delivered `message` (1 the first time)."""
    return message.metadata.num_delivered or 1


def _stream_seq(message: Msg) -> int:
    sequence = message.metadata.sequence
    return sequence.stream if sequence else 0
