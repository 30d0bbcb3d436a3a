"""The `deployments` read model: one row per deployment, for listing and filtering.

A deployment's stages are not kept here: `GET /deployments/{id}` folds the
deployment's own stream (a few dozen events), which is exact and always
current, while listings need an index over every deployment by application
and status, which this table is.

Statuses move forward only (PENDING → PLANNED → RUNNING → ROLLING_BACK →
SUCCESS | FAILURE | CANCELLED), as the executor's decider has them, so a
duplicate or late event cannot move a row back.
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

from shared.events.base import RecordedEvent
from shared.events.catalog import (
    DeploymentCompleted,
    DeploymentPlanFailed,
    DeploymentPlanned,
    DeploymentQueued,
    DeploymentRollingBack,
    DeploymentStarted,
    DeploymentTriggered,
)
from shared.projections.single_table import SingleTableProjection

__all__ = ["DeploymentsProjection"]

_DDL = """
CREATE TABLE {table} (
  deployment_id     text        PRIMARY KEY,
  application_id    text        NOT NULL,
  status            text        NOT NULL,
  trigger           text        NOT NULL,
  commit_hash       text        NOT NULL,
  commit_message    text        NOT NULL,
  commander         text        NOT NULL,
  strategy          text        NOT NULL,
  summary           text        NOT NULL,
  reason            text        NOT NULL,
  queued_behind     text,
  triggered_at      timestamptz NOT NULL,
  started_at        timestamptz,
  completed_at      timestamptz,
  updated_at        timestamptz NOT NULL,
  created_position  bigint      NOT NULL,
  last_position     bigint      NOT NULL
);
CREATE INDEX ON {table} (application_id, created_position DESC);
CREATE INDEX ON {table} (status, created_position DESC);
CREATE INDEX ON {table} (created_position DESC);
"""

# The rank of each status; a row's status changes only to one of higher rank.
_RANK_SQL = """(CASE {s} WHEN 'PENDING' THEN 0 WHEN 'PLANNED' THEN 1 WHEN 'RUNNING' THEN 2
  WHEN 'ROLLING_BACK' THEN 3 ELSE 4 END)"""
_FORWARD = f"""CASE WHEN {_RANK_SQL.format(s="d.status")} = 4
    OR {_RANK_SQL.format(s="$2::text")} < {_RANK_SQL.format(s="d.status")}
  THEN d.status ELSE $2::text END"""

# Either event may be the first this table sees of a deployment: both insert.
_INSERT = """
INSERT INTO {table} AS d (deployment_id, application_id, status, trigger, commit_hash,
                          commit_message, commander, strategy, summary, reason,
                          triggered_at, updated_at, created_position, last_position)"""

_TRIGGERED = (
    _INSERT
    + """
VALUES ($1, $2, 'PENDING', $3, $4, $5, $6, $7, '', '', $8, $8, $9, $9)
ON CONFLICT (deployment_id) DO NOTHING
"""
)

# A plan may arrive for a deployment whose trigger this table never saw (a
# stream written without one, in tests): it creates the row then.
_PLANNED = (
    _INSERT
    + f"""
VALUES ($1, $3, 'PLANNED', '', $4, '', '', $5, $6, '', $7, $7, $8, $8)
ON CONFLICT (deployment_id) DO UPDATE
  SET status = {_FORWARD}, strategy = excluded.strategy, summary = excluded.summary,
      commit_hash = excluded.commit_hash, updated_at = excluded.updated_at,
      last_position = excluded.last_position, queued_behind = NULL
"""
)

# Waiting its turn until planned (as `shared.deployments.evolve` has it); a queue
# event that comes after the plan (a replay of a late one) changes nothing.
_QUEUED = """
UPDATE {table} SET queued_behind = $2, updated_at = $3, last_position = $4
WHERE deployment_id = $1 AND status = 'PENDING'
"""

_STATUS = f"""
UPDATE {{table}} AS d
SET status = {_FORWARD},
    reason = CASE WHEN $3::text <> '' THEN $3::text ELSE d.reason END,
    started_at = coalesce(d.started_at, $4),
    completed_at = CASE WHEN {_RANK_SQL.format(s="d.status")} < 4
                         AND {_RANK_SQL.format(s="$2::text")} = 4
                        THEN $5 ELSE d.completed_at END,
    updated_at = $5, last_position = $6
WHERE deployment_id = $1
"""


class DeploymentsProjection(SingleTableProjection):
    """Deployments with their application, status, trigger, commit and times."""

    name = "deployments"
    ddl = _DDL
    version = 2  # 2: queued_behind

    async def apply(
        self, conn: asyncpg.Connection, event: RecordedEvent, tables: Mapping[str, str]
    ) -> None:
        """Update the deployments table for one event."""
        at, position = event.recorded_at, event.global_position
        match event.event:
            case DeploymentTriggered() as e:
                await conn.execute(
                    self.sql(_TRIGGERED, tables),
                    e.deployment_id,
                    e.application_id,
                    e.trigger,
                    e.commit_hash,
                    e.commit_message,
                    e.commander,
                    e.strategy,
                    at,
                    position,
                )
            case DeploymentQueued() as e:
                await conn.execute(
                    self.sql(_QUEUED, tables), e.deployment_id, e.behind_deployment_id, at, position
                )
            case DeploymentPlanned() as e:
                await conn.execute(
                    self.sql(_PLANNED, tables),
                    e.deployment_id,
                    "PLANNED",
                    e.application_id,
                    e.commit_hash,
                    e.strategy,
                    e.summary,
                    at,
                    position,
                )
            case DeploymentStarted() as e:
                await self._status(
                    conn, tables, e.deployment_id, "RUNNING", "", e.started_at, event
                )
            case DeploymentRollingBack() as e:
                await self._status(
                    conn, tables, e.deployment_id, "ROLLING_BACK", e.reason, None, event
                )
            case DeploymentPlanFailed() as e:
                await self._status(conn, tables, e.deployment_id, "FAILURE", e.reason, None, event)
            case DeploymentCompleted() as e:
                await self._status(conn, tables, e.deployment_id, e.status, e.reason, None, event)
            case _:
                pass

    async def _status(
        self,
        conn: asyncpg.Connection,
        tables: Mapping[str, str],
        deployment_id: str,
        status: str,
        reason: str,
        started_at: object,
        event: RecordedEvent,
    ) -> None:
        await conn.execute(
            self.sql(_STATUS, tables),
            deployment_id,
            status,
            reason,
            started_at,
            event.recorded_at,
            event.global_position,
        )
