"""The delivery queue (`notifier_outbox`, migration 0006): schedule, claim, record.

A row is scheduled in the consumer's transaction, claimed by one worker at a
time (FOR UPDATE SKIP LOCKED: replicas claiming at once take different rows
rather than queueing on each other) under a lease with a fencing token, and
closed in the transaction that appends the outcome's event — only while the
claim is still the worker's own, so a worker that stalled past its lease
cannot record anything after another took the row over.

Slack threads (migration 0011): a row may carry a `thread_key` (its
deployment, for a Slack Web API receiver). While an earlier row of the same
receiver and key is undone, `earlier_in_thread` says so and the worker puts
the row back (`postpone`, no attempt counted); the first one delivered keeps
its message's `ts` (`keep_thread`), which the later ones are posted under.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
import msgspec

from shared.db import CONNECTION_ERRORS
from shared.errors import SlipwayError, Unavailable
from shared.eventlog import ANY, EventStore
from shared.eventlog.store import Connection
from shared.events.base import Metadata, NewEvent
from shared.events.catalog import NotificationScheduled
from shared.events.streams import notification_stream

__all__ = ["Claim", "ClaimLost", "Outbox"]

_SCHEDULE = """
INSERT INTO notifier_outbox (notification_id, receiver, thread_key) VALUES ($1, $2, $3)
ON CONFLICT (notification_id) DO NOTHING
"""
_EARLIER_IN_THREAD = """
SELECT EXISTS (
  SELECT 1 FROM notifier_outbox o JOIN notifier_outbox me ON me.notification_id = $1
  WHERE o.receiver = me.receiver AND o.thread_key = me.thread_key AND me.thread_key <> ''
    AND o.done_at IS NULL
    AND (o.created_at, o.notification_id) < (me.created_at, me.notification_id)
)
"""
_THREAD = "SELECT ts FROM notifier_slack_threads WHERE receiver = $1 AND thread_key = $2"
_KEEP_THREAD = """
INSERT INTO notifier_slack_threads (receiver, thread_key, channel, ts) VALUES ($1, $2, $3, $4)
ON CONFLICT (receiver, thread_key) DO NOTHING
"""
_POSTPONE = """
UPDATE notifier_outbox
SET holder = NULL, expires_at = NULL,
    next_attempt_at = clock_timestamp() + make_interval(secs => $4)
WHERE notification_id = $1 AND holder = $2 AND token = $3 AND done_at IS NULL
"""
# Due, not done, and nobody's (or an expired claim, or our own from before a restart
# of this instance: `running` keeps the ones this process is sending right now out).
_CLAIM = """
WITH due AS (
  SELECT notification_id FROM notifier_outbox
  WHERE done_at IS NULL AND next_attempt_at <= clock_timestamp()
    AND (holder IS NULL OR holder = $1 OR expires_at < clock_timestamp())
    AND NOT (notification_id = ANY($3::text[]))
  ORDER BY next_attempt_at
  LIMIT $2
  FOR UPDATE SKIP LOCKED
)
UPDATE notifier_outbox o
SET holder = $1, token = o.token + 1, expires_at = clock_timestamp() + make_interval(secs => $4)
FROM due
WHERE o.notification_id = due.notification_id
RETURNING o.notification_id, o.receiver, o.attempts, o.token
"""
_SCHEDULED = """
SELECT stream_id, payload, event_type, schema_version, metadata FROM events
WHERE stream_id = ANY($1::text[]) AND stream_version = 0
"""
_CLOSE = """
UPDATE notifier_outbox
SET attempts = $4, holder = NULL, expires_at = NULL,
    next_attempt_at = clock_timestamp() + make_interval(secs => $5),
    done_at = CASE WHEN $6 THEN clock_timestamp() END
WHERE notification_id = $1 AND holder = $2 AND token = $3 AND done_at IS NULL
RETURNING 1
"""
_PENDING = "SELECT count(*) FROM notifier_outbox WHERE done_at IS NULL"
_NEXT_DUE = (
    "SELECT min(next_attempt_at) - clock_timestamp() FROM notifier_outbox WHERE done_at IS NULL"
)


class ClaimLost(SlipwayError):
    """The row is no longer this worker's (its lease ran out and another took it)."""


@dataclass(frozen=True)
class Claim:
    """A notification this worker may send now: its scheduling event and its attempt number."""

    scheduled: NotificationScheduled
    attempt: int
    token: int
    metadata: Metadata = field(default_factory=Metadata)
    """The scheduling event's envelope: its trace is the one each attempt continues."""


class Outbox:
    """`notifier_outbox` for one holder (this replica)."""

    def __init__(self, store: EventStore, holder: str, *, lease_s: float) -> None:
        self.store = store
        self.pool: asyncpg.Pool = store.pool
        self.holder = holder
        self.lease_s = lease_s

    @staticmethod
    async def schedule(
        conn: Connection, notification_id: str, receiver: str, thread_key: str = ""
    ) -> None:
        """Queue a notification (idempotent), in the caller's transaction; `thread_key`
        orders it within its thread (see the module's docstring)."""
        await conn.execute(_SCHEDULE, notification_id, receiver, thread_key)

    async def earlier_in_thread(self, notification_id: str) -> bool:
        """Whether an earlier notification of its thread is still undelivered."""
        return bool(
            await self._fetchval("look for earlier ones", _EARLIER_IN_THREAD, notification_id)
        )

    async def thread(self, receiver: str, thread_key: str) -> str | None:
        """The `ts` of the message that started the thread, once one was delivered."""
        ts = await self._fetchval("read a Slack thread", _THREAD, receiver, thread_key)
        return None if ts is None else str(ts)

    async def keep_thread(self, receiver: str, thread_key: str, channel: str, ts: str) -> None:
        """Remember the thread's first message (the first kept stays)."""
        await self._fetchval("keep a Slack thread", _KEEP_THREAD, receiver, thread_key, channel, ts)

    async def postpone(self, claim: Claim, seconds: float) -> None:
        """Give the claim back, due again in `seconds`, counting no attempt."""
        notification_id = claim.scheduled.notification_id
        await self._fetchval(
            "postpone", _POSTPONE, notification_id, self.holder, claim.token, seconds
        )

    async def _fetchval(self, what: str, query: str, *args: object) -> object:
        try:
            return await self.pool.fetchval(query, *args)
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"{what}: {exc}") from exc

    async def claim(self, limit: int, *, running: Sequence[str] = ()) -> list[Claim]:
        """Take up to `limit` due notifications, each under a fresh token."""
        if limit <= 0:
            return []
        try:
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(_CLAIM, self.holder, limit, list(running), self.lease_s)
                if not rows:
                    return []
                streams = [notification_stream(r["notification_id"]) for r in rows]
                scheduled = {
                    s["stream_id"]: (
                        self.store.registry.decode(
                            s["event_type"], s["schema_version"], s["payload"]
                        ),
                        msgspec.json.decode(s["metadata"], type=Metadata),
                    )
                    for s in await conn.fetch(_SCHEDULED, streams)
                }
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"claim notifications: {exc}") from exc
        claims = []
        for row, stream in zip(rows, streams, strict=True):
            event, metadata = scheduled.get(stream, (None, Metadata()))
            if isinstance(event, NotificationScheduled):
                claims.append(Claim(event, row["attempts"] + 1, row["token"], metadata))
        return claims

    async def record(
        self,
        claim: Claim,
        outcome: NewEvent,
        *,
        attempts: int,
        retry_in_s: float = 0.0,
        done: bool,
    ) -> None:
        """Append the attempt's outcome and update the row, both or neither; `ClaimLost` if the
        row is no longer ours."""
        notification_id = claim.scheduled.notification_id
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                # The outcome only keeps a delivery from being sent again: if a database
                # crash loses it, the notification is resent (same delivery id), never
                # lost. Not waiting for the WAL flush narrows the window in which a killed
                # notifier has sent a notification it has not recorded yet.
                await conn.execute("SET LOCAL synchronous_commit TO off")
                closed = await conn.fetchval(
                    _CLOSE,
                    notification_id,
                    self.holder,
                    claim.token,
                    attempts,
                    retry_in_s,
                    done,
                )
                if closed is None:
                    raise ClaimLost(f"notification {notification_id} is no longer claimed by us")
                await self.store.append(
                    notification_stream(notification_id), [outcome], expected_version=ANY, conn=conn
                )
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"record notification {notification_id}: {exc}") from exc

    async def pending(self) -> int:
        """Notifications scheduled and not done (delivered or given up)."""
        try:
            return int(await self.pool.fetchval(_PENDING))
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"count pending notifications: {exc}") from exc

    async def next_due_in_s(self) -> float | None:
        """Seconds until the soonest undone notification is due (≤ 0: now); None if none."""
        try:
            value = await self.pool.fetchval(_NEXT_DUE)
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"look for due notifications: {exc}") from exc
        return None if value is None else float(value.total_seconds())
