"""The `applications` read model: one row per registered application, for the API and UI."""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg
import msgspec

from shared.events.base import RecordedEvent
from shared.events.catalog import (
    ApplicationDeleted,
    ApplicationDisabled,
    ApplicationEnabled,
    ApplicationRegistered,
)
from shared.projections.single_table import SingleTableProjection

_DDL = """
CREATE TABLE {table} (
  application_id     text        PRIMARY KEY,
  name               text        NOT NULL,
  repository_id      text        NOT NULL,
  path               text        NOT NULL,
  config_filename    text        NOT NULL,
  platform_provider  text        NOT NULL,
  labels             jsonb       NOT NULL,
  disabled           boolean     NOT NULL,
  registered_at      timestamptz NOT NULL,
  updated_at         timestamptz NOT NULL,
  last_position      bigint      NOT NULL
);
CREATE INDEX ON {table} (repository_id);
CREATE INDEX ON {table} USING gin (labels);
"""

# A second registration of the same application updates its description but
# leaves `disabled` alone: only disabling and enabling change that.
_REGISTER = """
INSERT INTO {table} (application_id, name, repository_id, path, config_filename,
                     platform_provider, labels, disabled, registered_at, updated_at,
                     last_position)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, false, $8, $8, $9)
ON CONFLICT (application_id) DO UPDATE
  SET name = excluded.name, repository_id = excluded.repository_id, path = excluded.path,
      config_filename = excluded.config_filename,
      platform_provider = excluded.platform_provider, labels = excluded.labels,
      updated_at = excluded.updated_at, last_position = excluded.last_position
"""

_SET_DISABLED = """
UPDATE {table} SET disabled = $4, updated_at = $2, last_position = $3
WHERE application_id = $1
"""

# A deleted application's row goes (the event is on its name stream too: idempotent).
_DELETE = "DELETE FROM {table} WHERE application_id = $1"

_json = msgspec.json.Encoder()


class ApplicationsProjection(SingleTableProjection):
    """Applications with their repository, path, labels and whether they are disabled."""

    name = "applications"
    ddl = _DDL
    # 2: ApplicationEnabled clears `disabled` (version 1 ignored it).
    # 3: ApplicationDeleted drops the row.
    version = 3

    async def apply(
        self, conn: asyncpg.Connection, event: RecordedEvent, tables: Mapping[str, str]
    ) -> None:
        match event.event:
            case ApplicationRegistered() as registered:
                await conn.execute(
                    self.sql(_REGISTER, tables),
                    registered.application_id,
                    registered.name,
                    registered.repository_id,
                    registered.path,
                    registered.config_filename,
                    registered.platform_provider,
                    _json.encode(dict(registered.labels)).decode(),
                    event.recorded_at,
                    event.global_position,
                )
            case ApplicationDisabled() | ApplicationEnabled() as changed:
                await conn.execute(
                    self.sql(_SET_DISABLED, tables),
                    changed.application_id,
                    event.recorded_at,
                    event.global_position,
                    isinstance(changed, ApplicationDisabled),
                )
            case ApplicationDeleted() as deleted:
                await conn.execute(self.sql(_DELETE, tables), deleted.application_id)
            case _:
                pass
