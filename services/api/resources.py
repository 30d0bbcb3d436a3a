"""An application as the API shows it, built from its events or from the projection's row.

Both builders give the same answer for the same events: a write answers with
the state its own events produce (the projection may not have caught up
yet), and a read answers from the `applications` view; the fields mirror
that projection (`shared/projections/applications.py`), including which
events move `updated_at` and `position` (registration, disabling, enabling;
not syncs).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import msgspec

from services.api.decider import evolve
from services.api.schemas import ApplicationResource
from shared.events.base import RecordedEvent
from shared.events.catalog import ApplicationDisabled, ApplicationEnabled, ApplicationRegistered

__all__ = ["from_events", "from_row"]

_CHANGES_VIEW = (ApplicationRegistered, ApplicationDisabled, ApplicationEnabled)
_labels = msgspec.json.Decoder(dict[str, str])


def from_events(history: Sequence[RecordedEvent]) -> ApplicationResource | None:
    """The application after `history` (its stream, in order); None if it is not registered."""
    state = None
    registered: RecordedEvent | None = None
    changed: RecordedEvent | None = None
    for recorded in history:
        state = evolve(state, recorded.event)
        if isinstance(recorded.event, _CHANGES_VIEW):
            changed = recorded
            if registered is None and isinstance(recorded.event, ApplicationRegistered):
                registered = recorded
    if state is None or registered is None or changed is None:
        return None
    return ApplicationResource(
        application_id=state.application_id,
        name=state.name,
        repository_id=state.repository_id,
        path=state.path,
        config_filename=state.config_filename,
        platform_provider=state.platform_provider,
        labels=dict(state.labels),
        disabled=state.disabled,
        registered_at=registered.recorded_at,
        updated_at=changed.recorded_at,
        position=changed.global_position,
    )


def from_row(row: asyncpg.Record) -> ApplicationResource:
    """A row of the `applications` view."""
    labels = row["labels"]
    return ApplicationResource(
        application_id=row["application_id"],
        name=row["name"],
        repository_id=row["repository_id"],
        path=row["path"],
        config_filename=row["config_filename"],
        platform_provider=row["platform_provider"],
        labels=_labels.decode(labels) if isinstance(labels, str | bytes) else dict(labels),
        disabled=row["disabled"],
        registered_at=row["registered_at"],
        updated_at=row["updated_at"],
        position=row["last_position"],
    )
