"""Per-analysis leases with a fencing token, in PostgreSQL (`analysis_leases`, DESIGN §4).

The same scheme as the executor's deployment leases: a replica claims an
open analysis (no holder, its own from before a restart, or an expired
lease) and becomes its holder with a new token; it renews the lease while it
measures and releases it when it stops. Every append goes through
`append_fenced`, which checks in the append's own transaction that the lease
is still its own with the same token, holding a share lock on the row until
commit, so a takeover cannot slip in between the check and the append and a
replica that stalled past its lease writes nothing after another took over.
The append also expects the stream version the holder folded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

from shared.db import CONNECTION_ERRORS
from shared.errors import SlipwayError, Unavailable
from shared.eventlog import EventStore
from shared.events.base import NewEvent
from shared.events.catalog import AnalysisConcluded, AnalysisStarted

__all__ = ["Lease", "LeaseLost", "Leases", "Previous"]

_REGISTER: Final = """
INSERT INTO analysis_leases (analysis_id, deployment_id, application_id, stage_id)
VALUES ($1, $2, $3, $4) ON CONFLICT (analysis_id) DO NOTHING
"""
# SKIP LOCKED: replicas claiming at once take different analyses instead of queueing.
_CLAIM: Final = """
WITH candidates AS (
  SELECT analysis_id FROM analysis_leases
  WHERE concluded_at IS NULL
    AND (holder IS NULL OR holder = $1 OR expires_at < clock_timestamp())
    AND NOT (analysis_id = ANY($3::text[]))
  ORDER BY created_at
  LIMIT $2
  FOR UPDATE SKIP LOCKED
)
UPDATE analysis_leases l
SET holder = $1, token = l.token + 1,
    expires_at = clock_timestamp() + make_interval(secs => $4),
    updated_at = clock_timestamp()
FROM candidates c
WHERE l.analysis_id = c.analysis_id
RETURNING l.analysis_id, l.deployment_id, l.application_id, l.stage_id, l.token
"""
_RENEW: Final = """
UPDATE analysis_leases
SET expires_at = clock_timestamp() + make_interval(secs => $4), updated_at = clock_timestamp()
WHERE analysis_id = $1 AND holder = $2 AND token = $3 AND concluded_at IS NULL
RETURNING expires_at
"""
_RELEASE: Final = """
UPDATE analysis_leases SET holder = NULL, expires_at = NULL, updated_at = clock_timestamp()
WHERE analysis_id = $1 AND holder = $2 AND token = $3
"""
_FENCE: Final = """
SELECT 1 FROM analysis_leases
WHERE analysis_id = $1 AND holder = $2 AND token = $3 AND expires_at > clock_timestamp()
FOR SHARE
"""
_STARTED: Final = """
UPDATE analysis_leases SET started_at = coalesce(started_at, $2) WHERE analysis_id = $1
"""
_CONCLUDE: Final = """
UPDATE analysis_leases
SET concluded_at = coalesce(concluded_at, clock_timestamp()), verdict = coalesce(verdict, $2),
    holder = NULL, expires_at = NULL, updated_at = clock_timestamp()
WHERE analysis_id = $1
"""
_OPEN: Final = "SELECT count(*) FROM analysis_leases WHERE concluded_at IS NULL"
_PREVIOUS: Final = """
SELECT analysis_id, started_at FROM analysis_leases
WHERE application_id = $1 AND verdict = 'success' AND analysis_id <> $2
  AND started_at IS NOT NULL
ORDER BY concluded_at DESC LIMIT 1
"""

DEFAULT_TTL_S: Final = 15.0


class LeaseLost(SlipwayError):
    """The lease on an analysis is no longer this holder's: stop, write nothing."""


@dataclass(frozen=True)
class Lease:
    analysis_id: str
    deployment_id: str
    application_id: str
    stage_id: str
    holder: str
    token: int


@dataclass(frozen=True)
class Previous:
    analysis_id: str
    started_at: datetime


class Leases:
    """The `analysis_leases` table, for one holder (this replica)."""

    def __init__(self, store: EventStore, holder: str, *, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.store = store
        self.pool: asyncpg.Pool = store.pool
        self.holder = holder
        self.ttl_s = ttl_s

    @staticmethod
    async def register(
        conn: asyncpg.Connection,
        analysis_id: str,
        deployment_id: str,
        application_id: str,
        stage_id: str,
    ) -> None:
        """Make a requested analysis claimable (idempotent), in the caller's transaction."""
        await conn.execute(_REGISTER, analysis_id, deployment_id, application_id, stage_id)

    async def claim(self, limit: int, *, running: Sequence[str] = ()) -> list[Lease]:
        if limit <= 0:
            return []
        try:
            rows = await self.pool.fetch(_CLAIM, self.holder, limit, list(running), self.ttl_s)
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"claim analyses: {exc}") from exc
        return [
            Lease(
                r["analysis_id"],
                r["deployment_id"],
                r["application_id"],
                r["stage_id"],
                self.holder,
                r["token"],
            )
            for r in rows
        ]

    async def renew(self, lease: Lease) -> bool:
        """Extend the lease; False when it is no longer ours (taken over, or concluded)."""
        try:
            row = await self.pool.fetchrow(
                _RENEW, lease.analysis_id, lease.holder, lease.token, self.ttl_s
            )
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"renew the lease on analysis {lease.analysis_id}: {exc}") from exc
        return row is not None

    async def release(self, lease: Lease) -> None:
        try:
            await self.pool.execute(_RELEASE, lease.analysis_id, lease.holder, lease.token)
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"release the lease on analysis {lease.analysis_id}: {exc}") from exc

    async def open_count(self) -> int:
        return int(await self.pool.fetchval(_OPEN))

    async def previous(self, application_id: str, analysis_id: str) -> Previous | None:
        """The application's latest successful analysis other than this one (for PREVIOUS)."""
        try:
            row = await self.pool.fetchrow(_PREVIOUS, application_id, analysis_id)
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"find the previous analysis: {exc}") from exc
        return None if row is None else Previous(row["analysis_id"], row["started_at"])

    async def mark_concluded(self, analysis_id: str, verdict: str) -> None:
        try:
            await self.pool.execute(_CONCLUDE, analysis_id, verdict)
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"close the lease on analysis {analysis_id}: {exc}") from exc

    async def append_fenced(
        self, lease: Lease, stream_id: str, events: Sequence[NewEvent], *, expected_version: int
    ) -> None:
        """Append for the lease's analysis if and only if the lease is still ours.

        `LeaseLost` when it is not (nothing is written); `ConcurrencyConflict` when
        the stream moved past `expected_version`. An `AnalysisStarted` records the
        clock's start on the row, an `AnalysisConcluded` closes it, both in the
        append's transaction.
        """
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                held = await conn.fetchval(_FENCE, lease.analysis_id, lease.holder, lease.token)
                if held is None:
                    raise LeaseLost(
                        f"lease on analysis {lease.analysis_id} (token {lease.token}) is no "
                        f"longer held by {lease.holder}"
                    )
                await self.store.append(
                    stream_id, events, expected_version=expected_version, conn=conn
                )
                for new in events:
                    if isinstance(new.event, AnalysisStarted):
                        await conn.execute(_STARTED, lease.analysis_id, new.event.started_at)
                    if isinstance(new.event, AnalysisConcluded):
                        await conn.execute(_CONCLUDE, lease.analysis_id, new.event.verdict)
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"append to {stream_id}: {exc}") from exc
