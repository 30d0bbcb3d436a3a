"""Per-deployment leases with a fencing token, in `executor_leases` (DESIGN §4).

The lease itself — claim, renew, the fenced append, release — is
`shared.leases`: a replica claims a runnable deployment (not completed; no
holder, an expired lease, or its own from before a restart), renews the lease
while it runs the deployment, and every append it makes for the deployment is
fenced by the lease's token. What is the executor's: the row is registered in
the consumer's transaction with the deployment's application, and the append
of a `DeploymentCompleted` closes it (`completed_at`) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import asyncpg

from shared.db import CONNECTION_ERRORS
from shared.errors import Unavailable
from shared.events.base import NewEvent
from shared.events.catalog import DeploymentCompleted
from shared.leases import FencedLeases, LeaseLost, LeaseTable

__all__ = ["Lease", "LeaseLost", "Leases"]

_TABLE: Final = LeaseTable(
    table="executor_leases", key="deployment_id", closed_at="completed_at", noun="deployment"
)
_REGISTER: Final = """
INSERT INTO executor_leases (deployment_id, application_id) VALUES ($1, $2)
ON CONFLICT (deployment_id) DO NOTHING
"""
_COMPLETE: Final = """
UPDATE executor_leases
SET completed_at = coalesce(completed_at, clock_timestamp()), holder = NULL, expires_at = NULL,
    updated_at = clock_timestamp()
WHERE deployment_id = $1
"""
_HOLDER: Final = "SELECT holder, token, expires_at FROM executor_leases WHERE deployment_id = $1"


@dataclass(frozen=True)
class Lease:
    """One replica's hold on one deployment, fenced by `token`."""

    deployment_id: str
    application_id: str
    holder: str
    token: int

    @property
    def key(self) -> str:
        """The lease's key in the table: the deployment id."""
        return self.deployment_id


class Leases(FencedLeases[Lease]):
    """The `executor_leases` table, for one holder (this replica)."""

    table = _TABLE

    @staticmethod
    async def register(conn: asyncpg.Connection, deployment_id: str, application_id: str) -> None:
        """Make a planned deployment runnable (idempotent), in the caller's transaction."""
        await conn.execute(_REGISTER, deployment_id, application_id)

    def _lease(self, row: asyncpg.Record) -> Lease:
        return Lease(row["deployment_id"], row["application_id"], self.holder, row["token"])

    async def _after_append(
        self, conn: asyncpg.Connection, lease: Lease, events: Sequence[NewEvent]
    ) -> None:
        if any(isinstance(e.event, DeploymentCompleted) for e in events):
            await conn.execute(_COMPLETE, lease.deployment_id)

    async def holder_of(self, deployment_id: str) -> tuple[str | None, int] | None:
        """(holder, token) of a deployment's lease, or None when it has no row."""
        row = await self.pool.fetchrow(_HOLDER, deployment_id)
        return None if row is None else (row["holder"], row["token"])

    async def mark_completed(self, deployment_id: str) -> None:
        """Close the lease of a deployment found completed in its stream."""
        try:
            await self.pool.execute(_COMPLETE, deployment_id)
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"close the lease on {deployment_id}: {exc}") from exc
