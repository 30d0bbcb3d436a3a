"""The `applications` read model: one row per registered application, for the API and UI.

`labels` are the registration's labels merged with those of the application's
config file at the last commit the gitwatcher read (`ApplicationConfigObserved`),
the config's winning on a shared key; both sources are kept beside them, and
the config's `spec.description` too.
`sync_state` and `sync` are `shared.syncstate`'s fold of the application's
deployment and drift events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import asyncpg
import msgspec

from shared.events.base import RecordedEvent
from shared.events.catalog import (
    ApplicationConfigObserved,
    ApplicationDeleted,
    ApplicationDisabled,
    ApplicationEnabled,
    ApplicationRegistered,
)
from shared.projections.rows import rows_json
from shared.projections.single_table import SingleTableProjection
from shared.syncstate import SYNC_EVENTS, SyncStatus, evolve

_DDL = """
CREATE TABLE {table} (
  application_id     text        PRIMARY KEY,
  name               text        NOT NULL,
  repository_id      text        NOT NULL,
  path               text        NOT NULL,
  config_filename    text        NOT NULL,
  platform_provider  text        NOT NULL,
  labels             jsonb       NOT NULL,
  registered_labels  jsonb       NOT NULL,
  config_labels      jsonb       NOT NULL DEFAULT '{}',
  description        text        NOT NULL DEFAULT '',
  disabled           boolean     NOT NULL,
  registered_at      timestamptz NOT NULL,
  updated_at         timestamptz NOT NULL,
  last_position      bigint      NOT NULL,
  sync_state         text        NOT NULL DEFAULT 'UNKNOWN',
  sync               jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX ON {table} (name);
CREATE INDEX ON {table} (repository_id);
CREATE INDEX ON {table} USING gin (labels);
CREATE INDEX ON {table} (sync_state);
"""

# A second registration of the same application updates its description but
# leaves `disabled` alone: only disabling and enabling change that. Its labels
# stay under the config's (`||` keeps the right-hand value of a shared key).
_REGISTER = """
INSERT INTO {table} AS a (application_id, name, repository_id, path, config_filename,
                          platform_provider, labels, registered_labels, disabled,
                          registered_at, updated_at, last_position)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $7::jsonb, false, $8, $8, $9)
ON CONFLICT (application_id) DO UPDATE
  SET name = excluded.name, repository_id = excluded.repository_id, path = excluded.path,
      config_filename = excluded.config_filename,
      platform_provider = excluded.platform_provider,
      registered_labels = excluded.registered_labels,
      labels = excluded.registered_labels || a.config_labels,
      updated_at = excluded.updated_at, last_position = excluded.last_position
"""

# Config labels and the sync state leave `updated_at` and `last_position` alone:
# those say when the registration last changed (what the API's writes answer with).
# `||` is `shared.labels.merge_labels` in SQL: the config's value wins on a shared key.
_CONFIG_LABELS = """
UPDATE {table} SET config_labels = $2::jsonb, labels = registered_labels || $2::jsonb,
                   description = $3
WHERE application_id = $1
"""

_SYNC_OF = "SELECT application_id, sync FROM {table} WHERE application_id = ANY($1::text[])"
# The changed rows as one JSON array (`shared.projections.rows`): asyncpg would check and
# encode every element of three text arrays in Python.
_SET_SYNC = """
UPDATE {table} AS a SET sync_state = u.sync_state, sync = u.sync
FROM json_populate_recordset(NULL::{table}, $1::json) AS u
WHERE a.application_id = u.application_id
"""

_SET_DISABLED = """
UPDATE {table} SET disabled = $4, updated_at = $2, last_position = $3
WHERE application_id = $1
"""

# A deleted application's row goes (the event is on its name stream too: idempotent).
_DELETE = "DELETE FROM {table} WHERE application_id = $1"

# The events `apply` writes a row for besides the sync state's (SYNC_EVENTS).
_ROW_EVENTS = (
    ApplicationRegistered,
    ApplicationDisabled,
    ApplicationEnabled,
    ApplicationDeleted,
    ApplicationConfigObserved,
)

_json = msgspec.json.Encoder()
_sync = msgspec.json.Decoder(SyncStatus)


class _SyncRow(msgspec.Struct, frozen=True):
    """An application's sync columns, as `_SET_SYNC` reads them."""

    application_id: str
    sync_state: str
    sync: SyncStatus


class ApplicationsProjection(SingleTableProjection):
    """Applications with their repository, path, labels and whether they are disabled."""

    name = "applications"
    ddl = _DDL
    # 2: ApplicationEnabled clears `disabled` (version 1 ignored it).
    # 3: ApplicationDeleted drops the row.
    # 4: config labels merged into `labels`; the sync state.
    # 5: the config's description; an adoption's running commit in the sync state.
    # 6: an index on `name`, which the API lists by (without it a page sorts every row).
    version = 6
    event_types = (*_ROW_EVENTS, *SYNC_EVENTS)

    async def apply(
        self, conn: asyncpg.Connection, event: RecordedEvent, tables: Mapping[str, str]
    ) -> None:
        """Update the applications table for one event."""
        await self.apply_batch(conn, [event], tables)

    async def apply_batch(
        self,
        conn: asyncpg.Connection,
        events: Sequence[RecordedEvent],
        tables: Mapping[str, str],
    ) -> None:
        """Apply events in order, in the caller's transaction."""
        # Deployment events are most of the log: each run of them is folded in memory
        # and written in two statements, not two per event. Events this table ignores
        # (stages, analyses, notifications…) do not end a run: they change no row, and
        # ending the run at each would cost the two statements per deployment event again.
        # A run of row events of one kind (a repository's registrations, its configs
        # observed) goes as one pipelined `executemany`, not one round trip each.
        run: list[RecordedEvent] = []
        same: tuple[str, list[tuple[object, ...]]] | None = None
        for event in events:
            if isinstance(event.event, SYNC_EVENTS):
                if same:
                    await conn.executemany(self.sql(same[0], tables), same[1])
                    same = None
                run.append(event)
                continue
            statement = _row_statement(event)
            if statement is None:
                continue
            if run:
                await self._sync(conn, run, tables)
                run = []
            template, arguments = statement
            if same and same[0] is template:
                same[1].append(arguments)
                continue
            if same:
                await conn.executemany(self.sql(same[0], tables), same[1])
            same = (template, [arguments])
        if same:
            await conn.executemany(self.sql(same[0], tables), same[1])
        if run:
            await self._sync(conn, run, tables)

    async def _sync(
        self, conn: asyncpg.Connection, run: Sequence[RecordedEvent], tables: Mapping[str, str]
    ) -> None:
        """Fold `run` (sync events only) into the sync state of the applications it is about."""
        ids = sorted({_application_of(event) for event in run})
        rows = await conn.fetch(self.sql(_SYNC_OF, tables), ids)
        # Applications without a row (not registered, or deleted) have nothing to show it on.
        before = {row["application_id"]: _decode_sync(row["sync"]) for row in rows}
        after = dict(before)
        for event in run:
            application_id = _application_of(event)
            if application_id in after:
                after[application_id] = evolve(
                    after[application_id], event.event, event.recorded_at
                )
        changed = [app for app in after if after[app] != before[app]]
        if changed:
            await conn.execute(
                self.sql(_SET_SYNC, tables),
                rows_json([_SyncRow(app, after[app].state.value, after[app]) for app in changed]),
            )


def _row_statement(event: RecordedEvent) -> tuple[str, tuple[object, ...]] | None:
    """The statement (a template of this module) and arguments that write `event`'s change
    to an application's row; None for an event that changes none but its sync state."""
    match event.event:
        case ApplicationRegistered() as registered:
            return _REGISTER, (
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
            return _SET_DISABLED, (
                changed.application_id,
                event.recorded_at,
                event.global_position,
                isinstance(changed, ApplicationDisabled),
            )
        case ApplicationDeleted() as deleted:
            return _DELETE, (deleted.application_id,)
        case ApplicationConfigObserved() as observed:
            return _CONFIG_LABELS, (
                observed.application_id,
                _json.encode(dict(observed.labels)).decode(),
                observed.description,
            )
        case _:
            return None


def _application_of(event: RecordedEvent) -> str:
    application_id: str = getattr(event.event, "application_id")  # noqa: B009 - every SYNC_EVENTS has one
    return application_id


def _decode_sync(stored: str) -> SyncStatus:
    return SyncStatus() if stored == "{}" else _sync.decode(stored)
