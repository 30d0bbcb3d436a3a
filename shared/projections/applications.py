"""The `applications` read model: one row per registered application, for the API and UI.

`labels` are the registration's labels merged with those of the application's
config file at the last commit the gitwatcher read (`ApplicationConfigObserved`),
the config's winning on a shared key; both sources are kept beside them, and
the config's `spec.description` too.
`sync_state` and `sync` are `shared.syncstate`'s fold of the application's
deployment and drift events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

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
from shared.projections.base import ReplayBuffer
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
        await self.apply_with(conn, events, tables, _SyncInTable(self))

    def replay_buffer(self) -> ReplayBuffer:
        """A replay's fold holding the sync states in memory (`SyncHeld`)."""
        return SyncHeld(self)

    async def apply_with(
        self,
        conn: asyncpg.Connection,
        events: Sequence[RecordedEvent],
        tables: Mapping[str, str],
        sync: SyncFold,
    ) -> None:
        """Apply events in order, their sync states folded by `sync`."""
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
                await sync.fold(conn, run, tables)
                run = []
            template, arguments = statement
            if template is _DELETE:
                # Its row goes, and a registration after it starts from no sync state.
                sync.forget(_application_of(event))
            if same and same[0] is template:
                same[1].append(arguments)
                continue
            if same:
                await conn.executemany(self.sql(same[0], tables), same[1])
            same = (template, [arguments])
        if same:
            await conn.executemany(self.sql(same[0], tables), same[1])
        if run:
            await sync.fold(conn, run, tables)

    async def read_sync(
        self, conn: asyncpg.Connection, application_ids: Iterable[str], tables: Mapping[str, str]
    ) -> dict[str, SyncStatus]:
        """The stored sync states of those of `application_ids` that have a row."""
        rows = await conn.fetch(self.sql(_SYNC_OF, tables), sorted(application_ids))
        return {row["application_id"]: _decode_sync(row["sync"]) for row in rows}

    async def write_sync(
        self,
        conn: asyncpg.Connection,
        states: Mapping[str, SyncStatus],
        tables: Mapping[str, str],
    ) -> None:
        """Store `states` (application id to sync state) in one statement."""
        if states:
            await conn.execute(
                self.sql(_SET_SYNC, tables),
                rows_json(
                    [_SyncRow(app, status.state.value, status) for app, status in states.items()]
                ),
            )


class SyncFold(Protocol):
    """How `ApplicationsProjection.apply_with` folds runs of sync events."""

    async def fold(
        self, conn: asyncpg.Connection, run: Sequence[RecordedEvent], tables: Mapping[str, str]
    ) -> None:
        """Fold `run` (sync events only, in log order) into the applications' sync states."""

    def forget(self, application_id: str) -> None:
        """The application's row is deleted (in log order, before the next `fold`)."""


@dataclass
class _SyncInTable:
    """The live fold: each run read from the table, folded, and the changed states written."""

    projection: ApplicationsProjection

    async def fold(
        self, conn: asyncpg.Connection, run: Sequence[RecordedEvent], tables: Mapping[str, str]
    ) -> None:
        # Applications without a row (not registered, or deleted) have nothing to show it on.
        before = await self.projection.read_sync(conn, {_application_of(e) for e in run}, tables)
        after = dict(before)
        _fold_into(after, run)
        await self.projection.write_sync(
            conn, {app: after[app] for app in after if after[app] != before[app]}, tables
        )

    def forget(self, application_id: str) -> None:
        pass  # the table is read afresh for every run


@dataclass
class SyncHeld(ReplayBuffer):
    """A replay's fold: each application's sync state read once, held in memory while the
    replay goes through the log, and written once when it flushes (after the last window,
    or when more than `limit` applications are held). Over a long history an application
    appears in window after window (one deployment each), and reading, decoding, encoding
    and writing its row in every one was most of the replay's cost (benchmarks.scale)."""

    projection: ApplicationsProjection
    limit: int = 50_000
    held: dict[str, SyncStatus] = field(default_factory=dict)
    stored: dict[str, SyncStatus] = field(default_factory=dict)
    """What the table holds for each held application, to write only what changed."""

    async def apply_batch(
        self,
        conn: asyncpg.Connection,
        events: Sequence[RecordedEvent],
        tables: Mapping[str, str],
    ) -> None:
        """Fold a window; flush when more than `limit` applications are held."""
        await self.projection.apply_with(conn, events, tables, self)
        if len(self.held) > self.limit:
            await self.flush(conn, tables)

    async def fold(
        self, conn: asyncpg.Connection, run: Sequence[RecordedEvent], tables: Mapping[str, str]
    ) -> None:
        """Fold `run` into the held states, reading those not held yet."""
        unheld = {app for event in run if (app := _application_of(event)) not in self.held}
        if unheld:
            read = await self.projection.read_sync(conn, unheld, tables)
            self.held |= read
            self.stored |= read
        _fold_into(self.held, run)

    def forget(self, application_id: str) -> None:
        """Hold nothing of a deleted row: a later registration starts from the table's."""
        self.held.pop(application_id, None)
        self.stored.pop(application_id, None)

    async def flush(self, conn: asyncpg.Connection, tables: Mapping[str, str]) -> None:
        """Write the states that changed since they were read, and hold nothing."""
        changed = {app: status for app, status in self.held.items() if status != self.stored[app]}
        await self.projection.write_sync(conn, changed, tables)
        self.held, self.stored = {}, {}


def _fold_into(states: dict[str, SyncStatus], run: Sequence[RecordedEvent]) -> None:
    """Evolve `states` by `run`; the events of applications without a state change nothing."""
    for event in run:
        application_id = _application_of(event)
        status = states.get(application_id)
        if status is not None:
            states[application_id] = evolve(status, event.event, event.recorded_at)


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
