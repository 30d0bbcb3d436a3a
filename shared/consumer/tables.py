"""The consumer's two tables: its inbox (what it handled) and its dead letters.

The inbox (`consumer_inbox`) holds the id of every event a consumer handled,
written in the handler's own transaction, so a redelivery is recognised and
acknowledged without running the handler again. Every `inbox_prune_every_s` the
consumer deletes its own rows older than `inbox_retention_s`
(`SLIPWAY_CONSUMER_INBOX_RETENTION_S`, far longer than any redelivery, which
back-off keeps within minutes), in batches so no delete holds long locks.

Dead letters (`dead_letters`) keep a message that can never be handled, whole
(subject, headers, body), once per (consumer, subject, stream sequence).
Redrive (`slipway deadletters redrive`, migration 0009) marks one
`redrive_requested_at`; the consumer that wrote it takes its own requests and
settles each as redriven or failed (with why).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from shared.eventlog.store import ROW_COLUMNS

# One round trip for what a batch's transaction first needs: the log's copy of each
# event, and whether the inbox has it (an id the log lacks has no row: it is forged).
_LOGGED_AND_HANDLED = f"""
SELECT {ROW_COLUMNS},
       EXISTS (SELECT 1 FROM consumer_inbox i
               WHERE i.consumer = $2 AND i.event_id = events.event_id) AS handled
FROM events WHERE event_id = ANY($1::uuid[])
"""
_RECORD_HANDLED = "INSERT INTO consumer_inbox (consumer, event_id) SELECT $1, unnest($2::uuid[])"
_PRUNE_INBOX = """
DELETE FROM consumer_inbox WHERE ctid = ANY(ARRAY(
  SELECT ctid FROM consumer_inbox
  WHERE consumer = $1 AND handled_at < clock_timestamp() - make_interval(secs => $2)
  LIMIT $3))
"""
_REDRIVE_REQUESTS = """
SELECT id, subject, headers, data FROM dead_letters
WHERE consumer = $1 AND redrive_requested_at IS NOT NULL AND redriven_at IS NULL
ORDER BY id LIMIT $2
"""
_REDRIVEN = (
    "UPDATE dead_letters SET redriven_at = clock_timestamp(), redrive_error = NULL WHERE id = $1"
)
_REDRIVE_FAILED = (
    "UPDATE dead_letters SET redrive_requested_at = NULL, redrive_error = $2 WHERE id = $1"
)
_DEAD_LETTER = """
INSERT INTO dead_letters (consumer, subject, stream_seq, deliveries, headers, data, error)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)
ON CONFLICT (consumer, subject, stream_seq) DO NOTHING
"""


async def logged_and_handled(
    conn: asyncpg.Connection, consumer: str, ids: Sequence[uuid.UUID]
) -> tuple[dict[uuid.UUID, asyncpg.Record], set[uuid.UUID]]:
    """The log's rows of those of `ids` it holds (`EventStore.decode_row` decodes them), and
    which of those the inbox says `consumer` has handled: one query, not two."""
    rows = await conn.fetch(_LOGGED_AND_HANDLED, list(ids), consumer)
    return {row["event_id"]: row for row in rows}, {r["event_id"] for r in rows if r["handled"]}


async def record_handled(conn: asyncpg.Connection, consumer: str, ids: Sequence[uuid.UUID]) -> None:
    """Write `ids` into `consumer`'s inbox (in the caller's transaction)."""
    await conn.execute(_RECORD_HANDLED, consumer, list(ids))


async def prune_inbox(pool: asyncpg.Pool, consumer: str, older_than_s: float, batch: int) -> int:
    """Delete `consumer`'s inbox rows older than `older_than_s`, `batch` at a time; how many."""
    total = 0
    while True:
        status = await pool.execute(_PRUNE_INBOX, consumer, older_than_s, batch)
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < batch:
            return total


async def write_dead_letter(
    pool: asyncpg.Pool,
    *,
    consumer: str,
    subject: str,
    stream_seq: int | None,
    deliveries: int,
    headers: dict[str, str],
    data: bytes,
    reason: str,
) -> None:
    """Keep a message that can never be handled (idempotent per consumer, subject, sequence)."""
    await pool.execute(
        _DEAD_LETTER,
        consumer,
        subject,
        stream_seq,
        deliveries,
        json.dumps(headers),
        data,
        reason,
    )


@dataclass(frozen=True)
class RedriveRequest:
    """A dead letter its consumer was asked to handle again."""

    id: int
    subject: str
    headers: dict[str, str]
    data: bytes


async def redrive_requests(pool: asyncpg.Pool, consumer: str, limit: int) -> list[RedriveRequest]:
    """`consumer`'s dead letters asked for redrive and not yet redriven, oldest first."""
    rows = await pool.fetch(_REDRIVE_REQUESTS, consumer, limit)
    return [
        RedriveRequest(
            id=row["id"],
            subject=row["subject"],
            headers=row["headers"]
            if isinstance(row["headers"], dict)
            else json.loads(row["headers"]),
            data=bytes(row["data"]),
        )
        for row in rows
    ]


async def mark_redriven(pool: asyncpg.Pool, letter_id: int) -> None:
    """The letter's event is handled (or was already): its redrive is done."""
    await pool.execute(_REDRIVEN, letter_id)


async def mark_redrive_failed(pool: asyncpg.Pool, letter_id: int, why: str) -> None:
    """The redrive failed for a reason of the event's own: clear the request, keep why."""
    await pool.execute(_REDRIVE_FAILED, letter_id, why)
