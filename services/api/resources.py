"""An application as the API shows it, built from its events or from the projection's row.

Both builders give the same answer for the same events: a write answers with
the state its own events produce (the projection may not have caught up
yet), and a read answers from the `applications` view; the fields mirror
that projection (`shared/projections/applications.py`), including which
events move `updated_at` and `position` (registration, disabling, enabling;
not syncs). What an application's own stream cannot tell — the config
file's labels and the sync state — a write's answer takes from the row the
projection has at that moment (`current`).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import msgspec

from services.api.schemas import ApplicationResource, ApplicationSync
from shared.applications import RecordedApplication, fold_recorded
from shared.events.base import RecordedEvent
from shared.events.vocabulary import SyncState
from shared.labels import merge_labels
from shared.syncstate import SyncStatus

__all__ = ["from_events", "from_record", "from_row"]

_labels = msgspec.json.Decoder(dict[str, str])
_sync = msgspec.json.Decoder(SyncStatus)


def from_events(
    history: Sequence[RecordedEvent], current: ApplicationResource | None = None
) -> ApplicationResource | None:
    """The application after `history` (its stream, in order); None if it is not registered.

    `current` (the projection's row, if it has one) supplies the config labels and the sync
    state, which other streams decide."""
    return from_record(fold_recorded(history), current)


def from_record(
    folded: RecordedApplication | None, current: ApplicationResource | None = None
) -> ApplicationResource | None:
    """`from_events` from the stream already folded (`shared.applications.fold_recorded`,
    or a snapshot and the events after it)."""
    if folded is None:
        return None
    state = folded.application
    if state is None or folded.registered_at is None or folded.changed_at is None:
        return None
    config_labels = current.config_labels if current is not None else {}
    return ApplicationResource(
        application_id=state.application_id,
        name=state.name,
        repository_id=state.repository_id,
        path=state.path,
        config_filename=state.config_filename,
        platform_provider=state.platform_provider,
        labels=merge_labels(state.labels, config_labels.items()),
        disabled=state.disabled,
        registered_at=folded.registered_at,
        updated_at=folded.changed_at,
        position=folded.changed_position,
        registered_labels=dict(state.labels),
        config_labels=dict(config_labels),
        description=current.description if current is not None else "",
        sync_state=current.sync_state if current is not None else SyncState.UNKNOWN,
        sync=current.sync if current is not None else ApplicationSync(),
    )


def from_row(row: asyncpg.Record) -> ApplicationResource:
    """A row of the `applications` view."""
    return ApplicationResource(
        application_id=row["application_id"],
        name=row["name"],
        repository_id=row["repository_id"],
        path=row["path"],
        config_filename=row["config_filename"],
        platform_provider=row["platform_provider"],
        labels=_labels.decode(row["labels"]),
        disabled=row["disabled"],
        registered_at=row["registered_at"],
        updated_at=row["updated_at"],
        position=row["last_position"],
        registered_labels=_labels.decode(row["registered_labels"]),
        config_labels=_labels.decode(row["config_labels"]),
        description=row["description"],
        sync_state=row["sync_state"],
        sync=sync_of(row["sync"]),
    )


def sync_of(stored: str) -> ApplicationSync:
    """The API's view of the projection's `shared.syncstate.SyncStatus` (stored as JSON)."""
    if stored == "{}":
        return ApplicationSync()
    status = _sync.decode(stored)
    return ApplicationSync(
        state=status.state,
        reason=status.reason,
        since=status.since,
        running_commit=status.running_commit,
        adopted_commit=status.adopted_commit,
        last_deployment=status.last_deployment,
        drift=status.drift,
    )
