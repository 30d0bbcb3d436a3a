"""Per-deployment leases with a fencing token, in PostgreSQL (`executor_leases`, DESIGN §4).

A replica claims a runnable deployment (no holder, or the holder's lease
expired) and becomes its holder with a new token; it renews the lease while
it runs the deployment and releases it when it stops. Every append it makes
for the deployment goes through `append_fenced`, which checks in the append's
own transaction that the lease is still its own with the same token and holds
a share lock on the row until commit, so a takeover (an UPDATE of the row)
cannot slip in between the check and the append. The append also expects the
stream version the holder folded, so anything appended meanwhile by anyone
(a person's cancel, another holder) is a `ConcurrencyConflict`: reload, decide
again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import asyncpg

from shared.db import CONNECTION_ERRORS
from shared.errors import SlipwayError, Unavailable
from shared.eventlog import EventStore
from shared.events.base import NewEvent
from shared.events.catalog import DeploymentCompleted

__all__ = ["Lease", "LeaseLost", "Leases"]

_REGISTER = """
INSERT INTO executor_leases (deployment_id, application_id) VALUES ($1, $2)
ON CONFLICT (deployment_id) DO NOTHING
"""
# Runnable: not completed, and nobody's (or an expired, or our own from before a restart).
# SKIP LOCKED: replicas claiming at once take different deployments instead of queueing.
_CLAIM = """
WITH candidates AS (
  SELECT deployment_id FROM executor_leases
  WHERE completed_at IS NULL
    AND (holder IS NULL OR holder = $1 OR expires_at < clock_timestamp())
    AND NOT (deployment_id = ANY($3::text[]))
  ORDER BY created_at
  LIMIT $2
  FOR UPDATE SKIP LOCKED
)
UPDATE executor_leases l
SET holder = $1, token = l.token + 1,
    expires_at = clock_timestamp() + make_interval(secs => $4),
    updated_at = clock_timestamp()
FROM candidates c
WHERE l.deployment_id = c.deployment_id
RETURNING l.deployment_id, l.application_id, l.token
"""
_RENEW = """
UPDATE executor_leases
SET expires_at = clock_timestamp() + make_interval(secs => $4), updated_at = clock_timestamp()
WHERE deployment_id = $1 AND holder = $2 AND token = $3 AND completed_at IS NULL
RETURNING expires_at
"""
_RELEASE = """
UPDATE executor_leases SET holder = NULL, expires_at = NULL, updated_at = clock_timestamp()
WHERE deployment_id = $1 AND holder = $2 AND token = $3
"""
_FENCE = """
SELECT 1 FROM executor_leases
WHERE deployment_id = $1 AND holder = $2 AND token = $3 AND expires_at > clock_timestamp()
FOR SHARE
"""
_COMPLETE = """
UPDATE executor_leases
SET completed_at = coalesce(completed_at, clock_timestamp()), holder = NULL, expires_at = NULL,
    updated_at = clock_timestamp()
WHERE deployment_id = $1
"""
_OPEN = "SELECT count(*) FROM executor_leases WHERE completed_at IS NULL"
_HOLDER = "SELECT holder, token, expires_at FROM executor_leases WHERE deployment_id = $1"

DEFAULT_TTL_S: Final = 15.0


class LeaseLost(SlipwayError):
    """The lease on a deployment is no longer this holder's: stop running it, write nothing."""


@dataclass(frozen=True)
class Lease:
    deployment_id: str
    application_id: str
    holder: str
    token: int


class Leases:
    """The `executor_leases` table, for one holder (this replica)."""

    def __init__(self, store: EventStore, holder: str, *, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.store = store
        self.pool: asyncpg.Pool = store.pool
        self.holder = holder
        self.ttl_s = ttl_s

    @staticmethod
    async def register(conn: asyncpg.Connection, deployment_id: str, application_id: str) -> None:
        """Make a planned deployment runnable (idempotent), in the caller's transaction."""
        await conn.execute(_REGISTER, deployment_id, application_id)

    async def claim(self, limit: int, *, running: Sequence[str] = ()) -> list[Lease]:
        """Take up to `limit` runnable deployments, each with a new fencing token."""
        if limit <= 0:
            return []
        try:
            rows = await self.pool.fetch(_CLAIM, self.holder, limit, list(running), self.ttl_s)
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"claim deployments: {exc}") from exc
        return [
            Lease(r["deployment_id"], r["application_id"], self.holder, r["token"]) for r in rows
        ]

    async def renew(self, lease: Lease) -> bool:
        """Extend the lease; False when it is no longer ours (taken over, or completed)."""
        try:
            row = await self.pool.fetchrow(
                _RENEW, lease.deployment_id, lease.holder, lease.token, self.ttl_s
            )
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"renew the lease on {lease.deployment_id}: {exc}") from exc
        return row is not None

    async def release(self, lease: Lease) -> None:
        """Give the deployment up now (graceful shutdown), so another replica takes it at once."""
        try:
            await self.pool.execute(_RELEASE, lease.deployment_id, lease.holder, lease.token)
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"release the lease on {lease.deployment_id}: {exc}") from exc

    async def open_count(self) -> int:
        """How many deployments are not completed yet (for burst mode)."""
        return int(await self.pool.fetchval(_OPEN))

    async def holder_of(self, deployment_id: str) -> tuple[str | None, int] | None:
        """(holder, token) of a deployment's lease, or None when it has no row."""
        row = await self.pool.fetchrow(_HOLDER, deployment_id)
        return None if row is None else (row["holder"], row["token"])

    async def append_fenced(
        self, lease: Lease, stream_id: str, events: Sequence[NewEvent], *, expected_version: int
    ) -> None:
        """Append for the lease's deployment, if and only if the lease is still ours.

        Raises `LeaseLost` when it is not (nothing is written) and
        `ConcurrencyConflict` when the stream moved past `expected_version`.
        A `DeploymentCompleted` among the events closes the lease in the same
        transaction.
        """
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                held = await conn.fetchval(_FENCE, lease.deployment_id, lease.holder, lease.token)
                if held is None:
                    raise LeaseLost(
                        f"lease on {lease.deployment_id} (token {lease.token}) is no longer "
                        f"held by {lease.holder}"
                    )
                await self.store.append(
                    stream_id, events, expected_version=expected_version, conn=conn
                )
                if any(isinstance(e.event, DeploymentCompleted) for e in events):
                    await conn.execute(_COMPLETE, lease.deployment_id)
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"append to {stream_id}: {exc}") from exc

    async def mark_completed(self, deployment_id: str) -> None:
        """Close the lease of a deployment found completed in its stream."""
        try:
            await self.pool.execute(_COMPLETE, deployment_id)
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"close the lease on {deployment_id}: {exc}") from exc
