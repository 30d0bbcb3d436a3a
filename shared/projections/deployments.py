"""The `deployments` read model: one row per deployment, for listing and filtering.

A deployment's stages are not kept here: `GET /deployments/{id}` folds the
deployment's own stream (a few dozen events), which is exact and always
current, while listings need an index over every deployment by application
and status, which this table is.

Statuses move forward only (PENDING → PLANNED → RUNNING → ROLLING_BACK →
SUCCESS | FAILURE | CANCELLED), as the executor's decider has them, so a
duplicate or late event cannot move a row back.

A batch is folded in memory (`_evolve_row`, pure) over the rows it touches,
read in one statement and written back in one (as JSON, `shared.projections.rows`):
replaying a long log costs two round trips per batch rather than one per deployment
event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Final

import asyncpg
import msgspec

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
from shared.planning.version import shown_version
from shared.projections.rows import rows_json, upsert_from_json
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
  deployed_version  text        NOT NULL,
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

_EVENTS: Final = (
    DeploymentTriggered,
    DeploymentQueued,
    DeploymentPlanned,
    DeploymentStarted,
    DeploymentRollingBack,
    DeploymentPlanFailed,
    DeploymentCompleted,
)


class _Row(msgspec.Struct, frozen=True, kw_only=True):
    """One deployment's row, as the table holds it."""

    deployment_id: str
    application_id: str
    status: str
    trigger: str = ""
    commit_hash: str = ""
    commit_message: str = ""
    commander: str = ""
    strategy: str = ""
    summary: str = ""
    reason: str = ""
    deployed_version: str = ""
    """The version its plan deploys (`DeploymentPlanned.version`), clipped for listings."""
    queued_behind: str | None = None
    triggered_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime
    created_position: int
    last_position: int


_COLUMNS: Final = _Row.__struct_fields__
_READ = f"SELECT {', '.join(_COLUMNS)} FROM {{table}} WHERE deployment_id = ANY($1::text[])"
_WRITE = upsert_from_json(_COLUMNS, "deployment_id")

_RANK: Final = {"PENDING": 0, "PLANNED": 1, "RUNNING": 2, "ROLLING_BACK": 3}
_FINAL: Final = 4  # any other status (SUCCESS, FAILURE, CANCELLED) ends the deployment


def _forward(current: str, new: str) -> str:
    """`new` unless it would move the status back or `current` has ended it."""
    now = _RANK.get(current, _FINAL)
    return current if now == _FINAL or _RANK.get(new, _FINAL) < now else new


def _evolve_row(row: _Row | None, recorded: RecordedEvent) -> _Row | None:
    """The deployment's row after `recorded` (None: no row yet). Pure.

    Either the trigger or the plan may be the first this table sees of a
    deployment (a stream written without a trigger, in tests): both create
    the row. Other events change only a row that exists.
    """
    at, position = recorded.recorded_at, recorded.global_position
    r = msgspec.structs.replace
    match recorded.event:
        case DeploymentTriggered() as e:
            if row is not None:
                return row
            return _Row(
                deployment_id=e.deployment_id,
                application_id=e.application_id,
                status="PENDING",
                trigger=e.trigger,
                commit_hash=e.commit_hash,
                commit_message=e.commit_message,
                commander=e.commander,
                strategy=e.strategy,
                triggered_at=at,
                updated_at=at,
                created_position=position,
                last_position=position,
            )
        case DeploymentPlanned() as e:
            if row is None:
                return _Row(
                    deployment_id=e.deployment_id,
                    application_id=e.application_id,
                    status="PLANNED",
                    commit_hash=e.commit_hash,
                    strategy=e.strategy,
                    summary=e.summary,
                    deployed_version=shown_version(e.version),
                    triggered_at=at,
                    updated_at=at,
                    created_position=position,
                    last_position=position,
                )
            return r(
                row,
                status=_forward(row.status, "PLANNED"),
                strategy=e.strategy,
                summary=e.summary,
                deployed_version=shown_version(e.version),
                commit_hash=e.commit_hash,
                updated_at=at,
                last_position=position,
                queued_behind=None,
            )
        case DeploymentQueued() as e:
            # Waiting its turn until planned (as `shared.deployments.evolve` has it); a
            # queue event after the plan (a replay of a late one) changes nothing.
            if row is None or row.status != "PENDING":
                return row
            return r(
                row, queued_behind=e.behind_deployment_id, updated_at=at, last_position=position
            )
        case DeploymentStarted() as e:
            return _status(row, "RUNNING", "", e.started_at, recorded)
        case DeploymentRollingBack() as e:
            return _status(row, "ROLLING_BACK", e.reason, None, recorded)
        case DeploymentPlanFailed() as e:
            return _status(row, "FAILURE", e.reason, None, recorded)
        case DeploymentCompleted() as e:
            return _status(row, e.status, e.reason, None, recorded)
        case _:
            return row


def _status(
    row: _Row | None,
    status: str,
    reason: str,
    started_at: datetime | None,
    recorded: RecordedEvent,
) -> _Row | None:
    if row is None:
        return None
    ends = _RANK.get(row.status, _FINAL) < _FINAL and _RANK.get(status, _FINAL) == _FINAL
    return msgspec.structs.replace(
        row,
        status=_forward(row.status, status),
        reason=reason or row.reason,
        started_at=row.started_at or started_at,
        completed_at=recorded.recorded_at if ends else row.completed_at,
        updated_at=recorded.recorded_at,
        last_position=recorded.global_position,
    )


class DeploymentsProjection(SingleTableProjection):
    """Deployments with their application, status, trigger, commit and times."""

    name = "deployments"
    ddl = _DDL
    version = 3  # 2: queued_behind; 3: deployed_version
    event_types = _EVENTS

    async def apply(
        self, conn: asyncpg.Connection, event: RecordedEvent, tables: Mapping[str, str]
    ) -> None:
        """Update the deployments table for one event."""
        await self.apply_batch(conn, [event], tables)

    async def apply_batch(
        self,
        conn: asyncpg.Connection,
        events: Sequence[RecordedEvent],
        tables: Mapping[str, str],
    ) -> None:
        """Fold the batch into the rows of the deployments it is about, in memory, and
        write the changed rows back: two statements per batch, not one per event (a
        replay of a long log is bound by its round trips)."""
        mine = [event for event in events if isinstance(event.event, _EVENTS)]
        if not mine:
            return
        ids = sorted({_deployment_of(event) for event in mine})
        stored = await conn.fetch(self.sql(_READ, tables), ids)
        before: dict[str, _Row | None] = {row["deployment_id"]: _Row(**dict(row)) for row in stored}
        after = dict(before)
        for event in mine:
            deployment_id = _deployment_of(event)
            after[deployment_id] = _evolve_row(after.get(deployment_id), event)
        changed = [row for key, row in after.items() if row is not None and row != before.get(key)]
        if changed:
            await conn.execute(self.sql(_WRITE, tables), rows_json(changed))


def _deployment_of(event: RecordedEvent) -> str:
    deployment_id: str = getattr(event.event, "deployment_id")  # noqa: B009 - every _EVENTS has one
    return deployment_id
