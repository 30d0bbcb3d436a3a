"""An application's state, folded from its own stream: the api owns it, the planner reads it.

Pure, like a decider's `evolve`: no I/O, clock or logging. `None` stands for
an application not registered (the initial state).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime
from typing import Final

import msgspec

from shared.events.base import Event, RecordedEvent
from shared.events.catalog import (
    ApplicationDeleted,
    ApplicationDisabled,
    ApplicationEnabled,
    ApplicationRegistered,
)

__all__ = ["Application", "RecordedApplication", "application_of", "evolve", "fold_recorded"]


class Application(msgspec.Struct, frozen=True, kw_only=True):
    """A registered application; `None` stands for one not registered (the initial state)."""

    application_id: str
    name: str
    repository_id: str
    path: str
    config_filename: str
    platform_provider: str
    labels: tuple[tuple[str, str], ...]
    disabled: bool = False


def evolve(state: Application | None, event: Event) -> Application | None:
    """The application after `event` (events of other kinds leave it as it is).

    The latest registration describes it but leaves `disabled` alone: only
    disabling and enabling change that.
    """
    match event:
        case ApplicationRegistered():
            return Application(
                application_id=event.application_id,
                name=event.name,
                repository_id=event.repository_id,
                path=event.path,
                config_filename=event.config_filename,
                platform_provider=event.platform_provider,
                labels=event.labels,
                disabled=state.disabled if state is not None else False,
            )
        case ApplicationDisabled() if state is not None:
            return msgspec.structs.replace(state, disabled=True)
        case ApplicationEnabled() if state is not None:
            return msgspec.structs.replace(state, disabled=False)
        case ApplicationDeleted():
            return None  # deleted: as if never registered
        case _:
            return state


def application_of(events: Iterable[Event]) -> Application | None:
    """The application after `events` (its stream, in order), or None if it is not registered."""
    return functools.reduce(evolve, events, None)


class RecordedApplication(msgspec.Struct, frozen=True, kw_only=True):
    """An application's stream folded with the log's places and times: what the API shows
    (`services/api/resources.py`), and what a snapshot of the stream keeps."""

    application: Application | None = None
    """The application now (None: not registered, or deleted)."""
    registered_at: datetime | None = None
    """When it was first registered."""
    changed_at: datetime | None = None
    """When it was last registered, disabled or enabled (what moves the view's `updated_at`)."""
    changed_position: int = 0
    """The log position of that change."""


_CHANGES_VIEW: Final = (ApplicationRegistered, ApplicationDisabled, ApplicationEnabled)


def fold_recorded(
    history: Iterable[RecordedEvent], start: RecordedApplication | None = None
) -> RecordedApplication | None:
    """The application after its stream's recorded events, from `start` (a snapshot of the
    stream's beginning; None: from the start); None when nothing was folded at all."""
    folded = start
    for recorded in history:
        folded = folded or RecordedApplication()
        event = recorded.event
        application = evolve(folded.application, event)
        if isinstance(event, _CHANGES_VIEW):
            folded = RecordedApplication(
                application=application,
                registered_at=folded.registered_at
                or (recorded.recorded_at if isinstance(event, ApplicationRegistered) else None),
                changed_at=recorded.recorded_at,
                changed_position=recorded.global_position,
            )
        elif application is not folded.application:
            folded = msgspec.structs.replace(folded, application=application)
    return folded
