"""Per-analysis leases with a fencing token, in `analysis_leases` (DESIGN §4).

The lease itself — claim, renew, the fenced append, release — is
`shared.leases`, the same scheme as the executor's deployment leases: a
replica claims an open analysis (not concluded; no holder, an expired lease,
or its own from before a restart), renews the lease while it measures, and
every append it makes is fenced by the lease's token. What is the analysis
service's: the row carries the analysis' deployment, application and stage;
an appended `AnalysisStarted` records the clock's start on it and an
`AnalysisConcluded` closes it with its verdict, in the append's transaction;
and the rows answer PREVIOUS (the application's last successful analysis).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

from shared.db import CONNECTION_ERRORS
from shared.errors import Unavailable
from shared.events.base import NewEvent
from shared.events.catalog import AnalysisConcluded, AnalysisStarted
from shared.leases import FencedLeases, LeaseLost, LeaseTable

__all__ = ["Lease", "LeaseLost", "Leases", "Previous"]

_TABLE: Final = LeaseTable(
    table="analysis_leases", key="analysis_id", closed_at="concluded_at", noun="analysis"
)
_REGISTER: Final = """
INSERT INTO analysis_leases (analysis_id, deployment_id, application_id, stage_id)
VALUES ($1, $2, $3, $4) ON CONFLICT (analysis_id) DO NOTHING
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
_PREVIOUS: Final = """
SELECT analysis_id, started_at FROM analysis_leases
WHERE application_id = $1 AND verdict = 'success' AND analysis_id <> $2
  AND started_at IS NOT NULL
ORDER BY concluded_at DESC LIMIT 1
"""


@dataclass(frozen=True)
class Lease:
    """One replica's hold on one analysis, fenced by `token`."""

    analysis_id: str
    deployment_id: str
    application_id: str
    stage_id: str
    holder: str
    token: int

    @property
    def key(self) -> str:
        """The lease's key in the table: the analysis id."""
        return self.analysis_id


@dataclass(frozen=True)
class Previous:
    """The application's previous concluded analysis (what a baseline compares against)."""

    analysis_id: str
    started_at: datetime


class Leases(FencedLeases[Lease]):
    """The `analysis_leases` table, for one holder (this replica)."""

    table = _TABLE

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

    def _lease(self, row: asyncpg.Record) -> Lease:
        return Lease(
            row["analysis_id"],
            row["deployment_id"],
            row["application_id"],
            row["stage_id"],
            self.holder,
            row["token"],
        )

    async def _after_append(
        self, conn: asyncpg.Connection, lease: Lease, events: Sequence[NewEvent]
    ) -> None:
        for new in events:
            if isinstance(new.event, AnalysisStarted):
                await conn.execute(_STARTED, lease.analysis_id, new.event.started_at)
            if isinstance(new.event, AnalysisConcluded):
                await conn.execute(_CONCLUDE, lease.analysis_id, new.event.verdict)

    async def previous(self, application_id: str, analysis_id: str) -> Previous | None:
        """The application's latest successful analysis other than this one (for PREVIOUS)."""
        try:
            row = await self.pool.fetchrow(_PREVIOUS, application_id, analysis_id)
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"find the previous analysis: {exc}") from exc
        return None if row is None else Previous(row["analysis_id"], row["started_at"])

    async def mark_concluded(self, analysis_id: str, verdict: str) -> None:
        """Close the lease of an analysis found concluded in its stream."""
        try:
            await self.pool.execute(_CONCLUDE, analysis_id, verdict)
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"close the lease on analysis {analysis_id}: {exc}") from exc
